"""Settings for the test suite: the product's settings with a throwaway key and fast password hashing.

The database comes from CALLCENTER_DATABASE_URL (scripts/run_tests.py runs the suite once on SQLite and once on
PostgreSQL); by default an in-memory SQLite test database.
"""

import os

os.environ.setdefault("CALLCENTER_SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("CALLCENTER_DATABASE_URL", "sqlite:///var/test.sqlite3")

from callcenter.crm.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
