"""PS3.16 SR template checkers whose template tables are written as data."""
