"""Pure domain: models, reasons, errors, overlay editing, planning. No I/O here."""
