"""User studies: ``talkface study export`` (a blinded, balanced questionnaire page and its key),
``talkface study analyze`` (statistics, report, plots) and ``talkface study simulate`` (synthetic
participants for pilots). See docs/study.md; the modules are listed there."""
