"""SQL state shared by every stage: models, sessions, migrations and the audit chain."""
