"""Django settings for the CRM, read from the environment (see README, "Configuration")."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import phonenumbers
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from callcenter.crm.env import (
    database_from_url,
    env_bool,
    env_choice,
    env_list,
    env_str,
    env_time_zone,
    env_url,
)

PACKAGE_DIR = Path(__file__).resolve().parent.parent
BASE_DIR = Path(env_str("CALLCENTER_HOME") or Path.cwd())

DEBUG = env_bool("CALLCENTER_DEBUG", False)
_secret = env_str("CALLCENTER_SECRET_KEY")
if not _secret:
    if not (DEBUG or env_bool("CALLCENTER_INSECURE_DEV_KEY", False)):
        raise ImproperlyConfigured(
            "CALLCENTER_SECRET_KEY is not set; set it (or CALLCENTER_SECRET_KEY_FILE) to a long random string, "
            "or CALLCENTER_DEBUG=true for development"
        )
    _secret = "insecure-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = _secret

ALLOWED_HOSTS = env_list("CALLCENTER_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CALLCENTER_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "callcenter.resources",
    "callcenter.contacts",
    "callcenter.activities",
    "callcenter.campaigns",
    "callcenter.calls",
    "callcenter.crm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "callcenter.crm.urls"
ASGI_APPLICATION = "callcenter.crm.asgi.application"
WSGI_APPLICATION = "callcenter.crm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PACKAGE_DIR / "crm" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "callcenter.crm.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        env_str("CALLCENTER_DATABASE_URL") or "sqlite:///var/callcenter.sqlite3",
        BASE_DIR,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("el", _("Greek"))]
LOCALE_PATHS = [PACKAGE_DIR / "locale"]
TIME_ZONE = env_time_zone("CALLCENTER_TIME_ZONE", "Europe/Athens")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Set for `collectstatic` behind a web server; otherwise whitenoise serves the files from the apps directly.
STATIC_ROOT = env_str("CALLCENTER_STATIC_ROOT") or None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Login throttling (crm/login.py): the throttle refuses a locked log-in before any password is checked.
AUTHENTICATION_BACKENDS = [
    "callcenter.crm.login.ThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
CALLCENTER_TRUSTED_PROXIES = []
for _proxy in env_list("CALLCENTER_TRUSTED_PROXIES", []):
    try:
        CALLCENTER_TRUSTED_PROXIES.append(ipaddress.ip_network(_proxy.strip("[]"), strict=False))
    except ValueError:
        raise ImproperlyConfigured(
            f"CALLCENTER_TRUSTED_PROXIES: {_proxy!r} is not an address or network; list the proxies' addresses, "
            "e.g. 127.0.0.1,10.0.0.0/24"
        ) from None

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("CALLCENTER_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

_redis = env_url("CALLCENTER_REDIS_URL", ("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0")
# channels_redis waits for a screen's next message with a blocking pop of up to 5 s (brpop_timeout); redis-py gives
# up a read after socket_timeout, by default 5 s too, and then the consumer dies and the screen's WebSocket drops
# without a close frame whenever it had nothing to receive for a while. The read must outlast the pop.
REDIS_SOCKET_TIMEOUT = 15.0
if _redis:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": _redis, "socket_timeout": REDIS_SOCKET_TIMEOUT}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Default region for displaying and parsing numbers that carry no country code.
CALLCENTER_PHONE_REGION = (env_str("CALLCENTER_PHONE_REGION") or "GR").strip().upper()
if CALLCENTER_PHONE_REGION not in phonenumbers.SUPPORTED_REGIONS:
    raise ImproperlyConfigured(
        f"CALLCENTER_PHONE_REGION={CALLCENTER_PHONE_REGION!r} is not a region code; use two letters such as GR or CY"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("CALLCENTER_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

CALLCENTER_TEST_FAST_HASHER = env_bool("CALLCENTER_TEST_FAST_HASHER", False)
if CALLCENTER_TEST_FAST_HASHER:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
