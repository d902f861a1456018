"""``*_FILE`` variants of the secret settings (Docker and Kubernetes secrets are files): read in
this one place, at the start of every ``ledgerline`` command and every API worker, into the
variable itself, so that everything else reads its settings as before."""

from __future__ import annotations

from collections.abc import MutableMapping

from ledgerline.settings import SettingsError

SECRET_SETTINGS = (
    "LEDGERLINE_SECRET_KEY",
    "LEDGERLINE_AUDIT_SIGNING_KEY",
    "LEDGERLINE_DATABASE_URL",  # carries the runtime role's password
    "LEDGERLINE_OWNER_DATABASE_URL",
    "LEDGERLINE_ADMIN_PASSWORD",
    "LEDGERLINE_WITNESS_API_KEY",
    "LEDGERLINE_NATS_URL",  # may carry credentials
)
MAX_BYTES = 64 * 1024


def read_secret_files(environ: MutableMapping[str, str]) -> None:
    """For each ``NAME_FILE`` set: ``NAME`` becomes the file's text (one trailing newline
    stripped) and ``NAME_FILE`` is removed (processes started afterwards inherit the value).
    Errors name the variable and the file, never its content."""
    for name in SECRET_SETTINGS:
        path = environ.get(f"{name}_FILE", "").strip()
        if not path:
            environ.pop(f"{name}_FILE", None)
            continue
        if environ.get(name, "").strip():
            raise SettingsError(f"set {name} or {name}_FILE, not both")
        try:
            with open(path, "rb") as file:
                raw = file.read(MAX_BYTES + 1)
            text = raw.decode("utf-8")
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise SettingsError(f"{name}_FILE: cannot read {path} ({reason})") from None
        except UnicodeDecodeError:
            raise SettingsError(f"{name}_FILE: {path} is not UTF-8 text") from None
        if len(raw) > MAX_BYTES:
            raise SettingsError(f"{name}_FILE: {path} is larger than {MAX_BYTES} bytes")
        value = text.removesuffix("\n").removesuffix("\r")
        if not value.strip():
            raise SettingsError(f"{name}_FILE: {path} is empty")
        environ[name] = value
        del environ[f"{name}_FILE"]
