"""Shared face and media code that every part uses: media I/O, alignment, landmark and feature backends,
the per-clip executor, and the 68-point face rules (``face68``). Imports only ``utils`` and ``registry``."""
