"""Examples of roomcast in use; not part of the installed package."""
