"""Generated hostile inputs (see `nasty.py`); nothing binary is committed."""
