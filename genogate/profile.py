"""A researcher's or committee member's profile: which coordinator to talk to, and as whom.

A profile is a small TOML file, chosen with ``genogate --profile FILE`` or the ``GENOGATE_PROFILE``
environment variable::

    [profile]
    name = "alice"                       # who you are (shown in output; optional)
    coordinator = "coord.example.org:7443"
    ca_cert = "tls/ca.pem"               # the CA that signed the coordinator's certificate
    cert = "tls/alice.pem"               # your TLS client certificate ...
    key = "tls/alice.key"                # ... and its private key (mode 0600)
    signing_key = "alice.ed25519"        # your Ed25519 key (genogate keys new); signs proposals and reviews

Relative paths resolve against the profile file's directory. ``GENOGATE_PROFILE__<KEY>`` (for example
``GENOGATE_PROFILE__COORDINATOR``) overrides one setting; relative paths given there resolve against the
current directory. Every problem in the file and the environment is reported at once in one ``ConfigError``.
The profile holds paths to key files, never key bytes; files are read only when a command needs them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genogate import config
from genogate.errors import ConfigError
from genogate.signing import Signer

if TYPE_CHECKING:
    from genogate.rpc import ClientTLS

PROFILE_ENV = "GENOGATE_PROFILE"
"""The environment variable naming the profile file when ``--profile`` is not given."""
ENV_PREFIX = "GENOGATE_"
"""Settings are overridden by ``GENOGATE_PROFILE__<KEY>`` (section ``profile``)."""


def _address(value: Any) -> Any:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. coord.example.org:7443), got {value!r}")
    return value


@dataclass(frozen=True)
class ProfileSettings:
    coordinator: str = field(
        metadata={"help": "The coordinator's gRPC address, HOST:PORT.", "check": _address},
    )
    ca_cert: Path = field(metadata={"help": "PEM file of the CA that signed the coordinator's TLS certificate."})
    cert: Path = field(metadata={"help": "PEM file of your TLS client certificate (mutual TLS)."})
    key: Path = field(metadata={"help": "PEM file of your TLS client private key (keep it mode 0600)."})
    signing_key: Path | None = field(
        default=None,
        metadata={
            "help": "PEM file of your Ed25519 signing key (genogate keys new): signs study proposals and "
            "reviews. Needed only by commands that sign."
        },
    )
    name: str = field(default="", metadata={"help": "Your display name (informational)."})


@dataclass(frozen=True)
class ProfileFile:
    profile: ProfileSettings = field(metadata={"help": "Who you are and which coordinator you talk to."})


@dataclass(frozen=True)
class Profile:
    """A loaded profile: the settings plus the file they came from."""

    path: Path
    settings: ProfileSettings

    @property
    def coordinator(self) -> str:
        return self.settings.coordinator

    @property
    def name(self) -> str:
        return self.settings.name

    def client_tls(self) -> ClientTLS:
        """The mTLS material, read now; one ``ConfigError`` names every file that cannot be read."""
        from genogate.rpc import ClientTLS

        s = self.settings
        files = {"ca_cert": s.ca_cert, "cert": s.cert, "key": s.key}
        data: dict[str, bytes] = {}
        problems: list[str] = []
        for key, path in files.items():
            try:
                data[key] = path.read_bytes()
            except OSError as exc:
                problems.append(f"[profile] {key}: cannot read {path} ({exc.strerror or type(exc).__name__})")
        if problems:
            raise ConfigError(f"{self.path}: " + "; ".join(problems))
        return ClientTLS(
            ca=data["ca_cert"], key=data["key"], cert=data["cert"], ca_file=str(s.ca_cert), cert_file=str(s.cert)
        )

    def signer(self) -> Signer:
        """The Ed25519 signer named by ``signing_key``; ``ConfigError`` if unset or unreadable."""
        if self.settings.signing_key is None:
            raise ConfigError(
                f"{self.path}: [profile] signing_key is not set; this command signs (create a key with "
                "'genogate keys new --out FILE' and name it in the profile)"
            )
        return Signer.from_pem_file(self.settings.signing_key)


def profile_path(given: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    """The profile file: ``given`` (``--profile``), else ``$GENOGATE_PROFILE``; ``ConfigError`` if neither."""
    if given is not None:
        return Path(given)
    from_env = env.get(PROFILE_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    raise ConfigError(f"no profile: pass --profile FILE or set {PROFILE_ENV}")


def load_profile(path: Path, env: Mapping[str, str] = os.environ) -> Profile:
    """Load ``path`` plus ``GENOGATE_PROFILE__*`` overrides; one ``ConfigError`` lists every problem."""
    # Only this tool's variables: other GENOGATE_* settings (e.g. a node's) are not ours to judge.
    ours = {k: v for k, v in env.items() if k.startswith(f"{ENV_PREFIX}profile__".upper())}
    loaded = config.load(ProfileFile, Path(path), ENV_PREFIX, ours)
    return Profile(path=Path(path), settings=loaded.profile)


def resolve(given: Path | None, env: Mapping[str, str] = os.environ) -> Profile:
    """``load_profile(profile_path(given, env), env)``."""
    return load_profile(profile_path(given, env), env)
