"""The one place stored credentials are encrypted and decrypted.

Keys live in a file (``CHUTIAN_SECRET_KEYS_FILE``), one Fernet key per line: the first
encrypts, all decrypt, so keys rotate by prepending a new one and re-encrypting later.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from controlplane.errors import ConfigurationError


class SecretBox:
    """Encrypts secrets at rest. `repr` never shows key material."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError(["secret keys: no key configured"])
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with the configured keys") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt under the first key (after a new key was prepended)."""
        return self._fernet.rotate(token.encode("ascii")).decode("ascii")


def read_keys(path: Path) -> list[bytes]:
    problems: list[str] = []
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except OSError as exc:
        raise ConfigurationError([f"secret keys file {path}: {exc.strerror}"]) from None
    keys: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            Fernet(stripped.encode("ascii"))
        except ValueError:
            problems.append(f"secret keys file {path}: line {number} is not a Fernet key")
            continue
        keys.append(stripped.encode("ascii"))
    if not keys and not problems:
        problems.append(f"secret keys file {path}: no keys")
    if path.stat().st_mode & 0o077:
        problems.append(f"secret keys file {path}: readable by group/others (chmod 600)")
    if problems:
        raise ConfigurationError(problems)
    return keys


def ensure_key_file(path: Path) -> None:
    """Embedded mode only: create a 0600 key file on first run (never overwrite one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("# Chutian secret keys: first line encrypts, all decrypt. Keep this file safe.\n")
        handle.write(Fernet.generate_key().decode("ascii") + "\n")
