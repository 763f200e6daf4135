"""``genogate``: the command line of researchers and access-committee members.

Commands talk to the coordinator named in a profile (``--profile FILE`` or ``$GENOGATE_PROFILE``; see
``genogate.profile``) over mutual TLS, except ``keys new``, which works offline. Every command prints a
readable table, or with ``--json`` the RPC's response message as JSON (protobuf JSON mapping, proto field
names, every enum value one lower-case word as ``genogate.words`` spells it: ``answered``, ``approved``).
Expected problems print one line ``genogate: error: ...`` and exit with a distinct code: 1 for an
error the coordinator (or the network) returned, 2 for bad arguments, 3 for a bad profile; a stack trace
means a bug.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genogate.cliutil import JSON_HELP, LazyCommands, add_completion, print_json, run
from genogate.errors import DeadlineExceeded, GenogateError, InvalidArgument, Unavailable, UsageError

if TYPE_CHECKING:
    from google.protobuf.message import Message

    _Sub = argparse._SubParsersAction[argparse.ArgumentParser]  # the sub-commands of a command group

    from genogate.coordclient import CoordinatorClient
    from genogate.profile import Profile
    from genogate.query import Kind
    from genogate.studies import StudyProposal

PROG = "genogate"
STATES = ("proposed", "approved", "rejected", "revoked", "expired")
KINDS_HELP = "cohort_count, allele_frequency, genotype_counts, case_control, carrier_count"
EPILOG = f"""\
profile (TOML; --profile FILE or $GENOGATE_PROFILE; relative paths resolve against the profile's directory):
  [profile]
  name = "alice"
  coordinator = "coord.example.org:7443"
  ca_cert = "tls/ca.pem"
  cert = "tls/alice.pem"
  key = "tls/alice.key"
  signing_key = "alice.ed25519"
GENOGATE_PROFILE__<KEY> (e.g. GENOGATE_PROFILE__COORDINATOR) overrides one setting.

exit codes: 0 ok; 1 the coordinator or the network refused; 2 bad arguments; 3 bad profile.
query kinds: {KINDS_HELP}."""


QUERY_NOTE = (
    "The query is signed with the profile's signing_key and the coordinator relays it to every site of the study; "
    "each site spends epsilon from its own ledger and answers with noise. The answer combines the sites with a "
    "95% interval for every number and lists each site's status."
)
FILTER_HELP = """\
filters (--where, --cases, --controls; keywords are case-insensitive):
  sex=F | sex!=M                       sex is F, M or U (unknown)
  age>=40 | age<65 | age=50            age in years
  ancestry=EUR | ancestry in (EUR,AFR) | ancestry not in (SAS)
  phenotype=HP:0001250 | phenotype!=ICD10:C50
  combine with and, or, not and parentheses, e.g.
    --where "sex=F and ancestry in (EUR,AFR) and phenotype=HP:0001250"
    --where "age>=40 and not (phenotype=ICD10:C50 or phenotype=ICD10:C61)"
"""
# Argument types (argparse reports their errors with the usage and exit code 2) -----------------------------


def _kinds(text: str) -> list[Kind]:
    from genogate.query import Kind

    try:
        kinds = [Kind.parse(part) for part in text.split(",") if part.strip()]
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None
    if not kinds:
        raise argparse.ArgumentTypeError("expected at least one query kind")
    return kinds


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected at least one comma-separated name")
    return names


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _public_key(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("expected the key as hex (64 hex digits)") from None
    if len(raw) != 32:
        raise argparse.ArgumentTypeError(f"expected a raw 32-byte Ed25519 public key (64 hex digits), got {len(raw)}")
    return raw


def _endpoint(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


# Parsers --------------------------------------------------------------------------------------------------


def _common(*, suppress: bool) -> argparse.ArgumentParser:
    """Options accepted before the command and after it (the leaf copies never overwrite the former)."""
    default: Any = argparse.SUPPRESS
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        default=default if suppress else None,
        help="profile TOML naming the coordinator and your keys (default: $GENOGATE_PROFILE)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=default if suppress else False,
        help="print the response message as JSON instead of a table",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        default=default if suppress else 60.0,
        help="deadline of each call to the coordinator (default: 60)",
    )
    return p


def _add_proposal_args(p: argparse.ArgumentParser) -> None:
    from genogate.genome import BUILDS

    p.add_argument("--title", required=True, help="short human-readable title")
    p.add_argument("--purpose", required=True, help='the purpose as a DUO code, e.g. "HMB", "DS-C50", "GRU"')
    p.add_argument("--kinds", type=_kinds, required=True, metavar="K1,K2", help=f"query kinds: {KINDS_HELP}")
    p.add_argument("--sites", type=_names, required=True, metavar="A,B", help="site (node) names")
    p.add_argument(
        "--epsilon-total", type=_positive_float, required=True, metavar="E", help="total epsilon asked at each site"
    )
    p.add_argument(
        "--epsilon-cap", type=_positive_float, required=True, metavar="C", help="largest epsilon of any one query"
    )
    p.add_argument("--days", type=_positive_int, required=True, metavar="D", help="grant duration from approval")
    p.add_argument("--description", default="", help="free-text description of the research question")
    p.add_argument(
        "--per-site-breakdown", action="store_true", help="ask to see each site's answer, not only the combination"
    )
    p.add_argument(
        "--assembly",
        choices=BUILDS,
        default="",
        help="the genome build of the study's coordinates (default: the one its sites share; sites on different "
        "builds cannot form one study)",
    )


def _parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The ``genogate`` parser. With ``lazy`` (the command line's own), the sub-commands of a command group are
    built only when that group is chosen (``cliutil.LazyCommands``): ``genogate --help`` or ``genogate study
    ...`` never import the query kinds, and ``genogate query ...`` builds no study or registry commands.
    Without it (tests, shell completion) the whole tree is built at once; either way it is the same parser."""
    leaf = _common(suppress=True)
    p = argparse.ArgumentParser(
        prog=PROG,
        parents=[_common(suppress=False)],
        description="Propose, review and inspect genogate studies; register nodes and researchers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"{PROG} 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", action=LazyCommands)
    assert isinstance(sub, LazyCommands)

    def group(name: str, help_text: str, fill: Callable[[_Sub], None]) -> None:
        g = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        actions = g.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.later(name, lambda: fill(actions), now=not lazy)

    def command(
        group_sub: _Sub,
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
        description: str,
    ) -> argparse.ArgumentParser:
        c = group_sub.add_parser(name, parents=[leaf], help=help_text, description=description)
        c.set_defaults(handler=handler)
        return c

    def keys_commands(keys: _Sub) -> None:
        c = keys.add_parser(
            "new",
            parents=[_json_only()],
            description="Create an Ed25519 private key (PEM, PKCS#8, mode 0600) and print its raw public key as "
            "hex and its fingerprint (SHA-256 of the raw public key: what proposals and reviews name). Works offline; "
            "never overwrites a file. Register the public key with 'genogate researchers register'.",
            help="create an Ed25519 signing key",
        )
        c.set_defaults(handler=_keys_new)
        c.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the private key")

    group("keys", "make Ed25519 signing keys", keys_commands)

    def study_commands(study: _Sub) -> None:
        c = command(
            study,
            "propose",
            _study_propose,
            "sign and propose a study",
            "Sign a study proposal with the profile's signing_key (its fingerprint becomes the proposal's "
            "researcher key) and send it; the study starts in state proposed.",
        )
        _add_proposal_args(c)
        c = command(
            study,
            "preview",
            _study_preview,
            "dry-run a proposal (nothing is signed or recorded)",
            "Check a proposal without signing or recording it: the grant an approval would issue, what each site "
            "would make of it (registered, reachable, purpose and kinds accepted, epsilon cap, expected noise) and "
            "every problem that would block it.",
        )
        _add_proposal_args(c)
        c = command(study, "list", _study_list, "list studies", "List studies, newest first.")
        c.add_argument("--state", choices=STATES, help="only studies in this state")
        c.add_argument("--researcher", metavar="FINGERPRINT", default="", help="only studies of this researcher key")
        c = command(study, "show", _study_show, "show one study", "Show one study: proposal, state, reviews, grant.")
        c.add_argument("study_id", metavar="ID", help="the study's id (as 'study list' shows it)")
        for name, verb in (("approve", "approve"), ("reject", "reject"), ("revoke", "revoke")):
            detail = {
                "approve": "Approve a proposed study; once enough reviewers approve, the committee's grant is issued.",
                "reject": "Reject a proposed study.",
                "revoke": "Revoke an approved study; nodes refuse its grant once they see the new revocation list.",
            }[name]
            c = command(
                study,
                name,
                _study_review,
                f"{verb} a study (committee; signs a review)",
                detail + " The review is signed with the profile's signing_key over the study's proposal hash.",
            )
            c.add_argument("study_id", metavar="ID", help="the study's id (as 'study list' shows it)")
            c.add_argument("--comment", default="", help="comment or reason, shown to the researcher")
            c.set_defaults(decision=name)

    group("study", "propose, preview, list, show and review studies", study_commands)

    def nodes_commands(nodes: _Sub) -> None:
        from genogate.genome import BUILDS

        c = command(
            nodes,
            "register",
            _nodes_register,
            "register a node",
            "Register a node: its name, endpoint and the TLS identity the coordinator pins: one certificate "
            "(--cert: its SHA-256) or the CA that issues the node's certificates (--ca: any certificate that CA "
            "issues for the name, so a renewed certificate needs no registry change).",
        )
        c.add_argument("--name", required=True, help="the site name grants and queries use")
        c.add_argument("--endpoint", type=_endpoint, required=True, metavar="HOST:PORT", help="the node's gRPC address")
        _add_pin_args(c, required=True)
        c.add_argument(
            "--build",
            choices=BUILDS,
            default="",
            help="the genome build you expect (optional): the coordinator reads the build from the node itself and "
            "refuses a node on another build; needed only to register a node the coordinator cannot reach yet",
        )
        command(nodes, "list", _nodes_list, "list registered nodes", "List the registered nodes.")
        c = command(
            nodes,
            "update",
            _nodes_update,
            "change a registered node (endpoint, pinned certificate or CA, build)",
            "Change a registered node in place, without removing it: its endpoint (after a move or a restart on "
            "another port), its pinned TLS identity (a new certificate, or its issuing CA), its genome build. The "
            "coordinator asks the node itself (GetNodeInfo, over mutual TLS at the new endpoint, under the new pin) "
            "for the build it serves; its next query goes to the new endpoint, with no restart. Audited in the "
            "coordinator's audit log: who, and each changed field old -> new.",
        )
        c.add_argument("name", metavar="NAME", help="the registered site name")
        c.add_argument("--endpoint", type=_endpoint, metavar="HOST:PORT", help="the node's new gRPC address")
        _add_pin_args(c, required=False)
        c.add_argument(
            "--build",
            choices=BUILDS,
            default="",
            help="the genome build you expect; the node's own build wins and must agree (default: as registered)",
        )
        c.add_argument(
            "--from-node",
            action="store_true",
            help="require reading the build from the node itself: refuse the update when the coordinator cannot "
            "reach it (without it an unreachable node keeps its registered build)",
        )
        c = command(
            nodes,
            "remove",
            _nodes_remove,
            "remove a node from the registry",
            "Remove a node from the registry: it is no longer listed or queried, and its name can be registered "
            "again. Refused while an active study (proposed, or approved and unexpired) names the node, listing "
            "them; with --force it is removed anyway and those studies' queries report the site refused (not "
            "registered) while their other sites answer. Audited in the coordinator's audit log.",
        )
        c.add_argument("name", metavar="NAME", help="the registered site name")
        c.add_argument(
            "--force",
            action="store_true",
            help="remove the node even though active studies name it (listed in the answer)",
        )

    group("nodes", "register, list, update and remove nodes (operators)", nodes_commands)

    def researchers_commands(researchers: _Sub) -> None:
        c = command(
            researchers,
            "register",
            _researchers_register,
            "register a researcher's public key",
            "Register a researcher's Ed25519 public key (the hex that 'genogate keys new' prints); the answer "
            "names the fingerprint their proposals must carry.",
        )
        c.add_argument("--name", required=True, help="display name")
        c.add_argument("--affiliation", required=True, help="institution")
        c.add_argument(
            "--public-key", type=_public_key, required=True, metavar="HEX", help="raw public key, 64 hex digits"
        )

    group("researchers", "register researchers' keys (committee)", researchers_commands)

    def query_commands(queries: _Sub) -> None:
        from genogate.genome import BUILDS
        from genogate.kinds import KINDS  # each kind's sub-command and arguments

        for kind in KINDS.values():
            name, help_text = kind.command, kind.help
            description = textwrap.fill(help_text[0].upper() + help_text[1:] + ". " + QUERY_NOTE, width=100)
            c = command(queries, name, _query, help_text, description)
            c.formatter_class = argparse.RawDescriptionHelpFormatter
            c.epilog = FILTER_HELP
            c.set_defaults(kind=name)
            c.add_argument("--study", required=True, metavar="ID", help="the approved study the query runs under")
            c.add_argument(
                "--epsilon", type=_positive_float, required=True, metavar="E", help="epsilon to spend at each site"
            )
            kind.add_arguments(c)
            c.add_argument(
                "--sites", type=_names, default=[], metavar="A,B", help="only these sites (default: the grant's)"
            )
            c.add_argument(
                "--assembly",
                choices=BUILDS,
                default="",
                help="the genome build of the variants and regions (default: the study's); a site on another build "
                "refuses",
            )
            c.add_argument(
                "--site-timeout",
                type=_positive_int,
                default=0,
                metavar="MS",
                help="per-site deadline (default: the coordinator's)",
            )

    group("query", "ask a federated question of every site of a study (researchers)", query_commands)

    c = sub.add_parser(
        "budget",
        parents=[leaf],
        help="show a study's privacy budget at each site",
        description="Each site's cap, spent and remaining epsilon for the study, as its own ledger reports it.",
    )
    c.set_defaults(handler=_budget)
    c.add_argument("--study", required=True, metavar="ID", help="the study whose budget to show")
    c.add_argument("--sites", type=_names, default=[], metavar="A,B", help="only these sites")

    add_completion(sub, PROG, _parser)
    return p


def _json_only() -> argparse.ArgumentParser:
    """The leaf options of a command that works offline: only ``--json`` (no profile, no deadline)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    return p


# Output ---------------------------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, message: Callable[[], Message], text: Callable[[], str]) -> int:
    """Print the response: ``--json`` the RPC's response message in the protobuf JSON mapping (enum values as
    ``genogate.words`` spells them), else ``text``."""
    if args.json:
        from genogate.words import message_json

        print_json(message_json(message()))
    else:
        print(text())
    return 0


def _profile(args: argparse.Namespace) -> Profile:
    from genogate.profile import resolve

    return resolve(args.profile)


def _client(args: argparse.Namespace, profile: Profile) -> CoordinatorClient:
    from genogate.coordclient import CoordinatorClient

    args.coordinator = profile.coordinator  # named in transport errors
    return CoordinatorClient(profile.coordinator, profile.client_tls(), timeout_s=args.timeout)


# Handlers -------------------------------------------------------------------------------------------------


def _keys_new(args: argparse.Namespace) -> int:
    from genogate.signing import Signer, load_private_key
    from genogate.tls import new_identity_key, write_secret

    pem = new_identity_key()
    signer = Signer(load_private_key(pem))
    try:
        write_secret(args.out, pem)
    except FileExistsError:
        raise UsageError(f"{args.out} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot write the key ({exc.strerror or type(exc).__name__})") from None
    if args.json:
        print_json(
            {
                "status": "created",
                "path": str(args.out),
                "public_key": signer.public_raw.hex(),
                "fingerprint": signer.key_id,
            }
        )
    else:
        from genogate.table import kv

        print(kv([("private key", args.out), ("public key", signer.public_raw.hex()), ("fingerprint", signer.key_id)]))
    return 0


def _proposal(args: argparse.Namespace, fingerprint: str) -> StudyProposal:
    from genogate.studies import StudyProposal

    return StudyProposal(
        title=args.title,
        purpose=args.purpose,
        kinds=tuple(args.kinds),
        sites=tuple(args.sites),
        epsilon_total_per_site=args.epsilon_total,
        epsilon_per_query_cap=args.epsilon_cap,
        duration_days=args.days,
        researcher_key_fingerprint=fingerprint,
        description=args.description,
        per_site_breakdown=args.per_site_breakdown,
        assembly=args.assembly,
    )


# --json prints the RPC's response message (the protobuf JSON mapping, the CLI's contract): the domain values
# the client returned, converted back to the message the coordinator sent (genogate.convert, exact).


def _study_propose(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import study_to_pb
    from genogate.wire.v1 import coordinator_pb2 as cpb

    profile = _profile(args)
    signer = profile.signer()
    with _client(args, profile) as client:
        s = client.propose(_proposal(args, signer.key_id), signer)
    return _emit(args, lambda: cpb.ProposeStudyResponse(study=study_to_pb(s)), lambda: table.study(s))


def _study_preview(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import preview_to_pb

    profile = _profile(args)
    fingerprint = profile.signer().key_id if profile.settings.signing_key is not None else ""
    with _client(args, profile) as client:
        preview = client.preview_study(_proposal(args, fingerprint))
    return _emit(args, lambda: preview_to_pb(preview), lambda: table.preview(preview))


def _study_list(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import study_to_pb
    from genogate.studies import StudyState
    from genogate.wire.v1 import coordinator_pb2 as cpb

    state = StudyState[args.state.upper()] if args.state else None
    profile = _profile(args)
    with _client(args, profile) as client:
        items = client.list_studies(state, args.researcher)
    return _emit(
        args, lambda: cpb.ListStudiesResponse(studies=[study_to_pb(s) for s in items]), lambda: table.studies(items)
    )


def _study_show(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import study_to_pb
    from genogate.wire.v1 import coordinator_pb2 as cpb

    profile = _profile(args)
    with _client(args, profile) as client:
        s = client.get_study(args.study_id)
    return _emit(args, lambda: cpb.GetStudyResponse(study=study_to_pb(s)), lambda: table.study(s))


def _study_review(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import study_to_pb
    from genogate.coordclient import sign_review
    from genogate.studies import ReviewDecision
    from genogate.wire.v1 import coordinator_pb2 as cpb

    decision = ReviewDecision[args.decision.upper()]
    profile = _profile(args)
    signer = profile.signer()
    with _client(args, profile) as client:
        current = client.get_study(args.study_id)
        review = sign_review(current, decision, args.comment, signer)
        if decision == ReviewDecision.REVOKE:
            revoked, epoch = client.revoke_study(review)
            return _emit(
                args,
                lambda: cpb.RevokeStudyResponse(study=study_to_pb(revoked), revocation_epoch=epoch),
                lambda: table.study(revoked, revocation_epoch=epoch),
            )
        s = client.review_study(review)
    return _emit(args, lambda: cpb.ReviewStudyResponse(study=study_to_pb(s)), lambda: table.study(s))


def _add_pin_args(c: argparse.ArgumentParser, *, required: bool) -> None:
    pin = c.add_mutually_exclusive_group(required=required)
    pin.add_argument(
        "--cert",
        type=Path,
        metavar="PEM",
        help="the node's TLS certificate: the coordinator pins exactly this certificate (its SHA-256)",
    )
    pin.add_argument(
        "--ca",
        type=Path,
        metavar="PEM",
        help="the certificate of the CA that issues the node's certificates (one the coordinator trusts): the "
        "coordinator pins the node's name and this CA, so a renewed certificate keeps working",
    )


def _pins(args: argparse.Namespace) -> tuple[str, str]:
    """(cert_sha256, ca_sha256) from --cert / --ca (at most one is given)."""
    from genogate.tls import fingerprint_sha256

    out = {"cert": "", "ca": ""}
    for option in ("cert", "ca"):
        path: Path | None = getattr(args, option)
        if path is None:
            continue
        try:
            out[option] = fingerprint_sha256(path.read_bytes())
        except OSError as exc:
            raise UsageError(f"--{option} {path}: cannot read ({exc.strerror or type(exc).__name__})") from None
        except ValueError:
            raise UsageError(f"--{option} {path}: not a PEM certificate") from None
    return out["cert"], out["ca"]


def _nodes_register(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import node_to_pb
    from genogate.studies import NodeInfo
    from genogate.wire.v1 import coordinator_pb2 as cpb

    cert_sha256, ca_sha256 = _pins(args)
    node = NodeInfo(
        name=args.name, endpoint=args.endpoint, cert_sha256=cert_sha256, genome_build=args.build, ca_sha256=ca_sha256
    )
    profile = _profile(args)
    with _client(args, profile) as client:
        registered = client.register_node(node)
    return _emit(args, lambda: cpb.RegisterNodeResponse(node=node_to_pb(registered)), lambda: table.nodes([registered]))


def _nodes_update(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import node_to_pb
    from genogate.studies import NodeUpdate
    from genogate.wire.v1 import coordinator_pb2 as cpb

    cert_sha256, ca_sha256 = _pins(args)
    update = NodeUpdate(args.name, args.endpoint or "", cert_sha256, ca_sha256, args.build, args.from_node)
    profile = _profile(args)
    with _client(args, profile) as client:
        before, after = client.update_node(update)
    return _emit(
        args,
        lambda: cpb.UpdateNodeResponse(before=node_to_pb(before), node=node_to_pb(after)),
        lambda: table.node_change(before, after),
    )


def _nodes_remove(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import node_to_pb
    from genogate.wire.v1 import coordinator_pb2 as cpb

    profile = _profile(args)
    with _client(args, profile) as client:
        node, studies = client.remove_node(args.name, force=args.force)
    return _emit(
        args,
        lambda: cpb.RemoveNodeResponse(node=node_to_pb(node), study_ids=studies),
        lambda: table.node_removed(node, studies),
    )


def _nodes_list(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import node_to_pb
    from genogate.wire.v1 import coordinator_pb2 as cpb

    profile = _profile(args)
    with _client(args, profile) as client:
        items = client.list_nodes()
    return _emit(args, lambda: cpb.ListNodesResponse(nodes=[node_to_pb(n) for n in items]), lambda: table.nodes(items))


def _researchers_register(args: argparse.Namespace) -> int:
    from genogate import table
    from genogate.convert import researcher_to_pb
    from genogate.wire.v1 import coordinator_pb2 as cpb

    profile = _profile(args)
    with _client(args, profile) as client:
        r = client.register_researcher(args.name, args.affiliation, args.public_key)
    return _emit(
        args, lambda: cpb.RegisterResearcherResponse(researcher=researcher_to_pb(r)), lambda: table.researcher(r)
    )


# Entry point ----------------------------------------------------------------------------------------------


def _query(args: argparse.Namespace) -> int:
    from genogate.client import Client
    from genogate.kinds import for_command

    profile = _profile(args)
    client = Client(profile.coordinator, profile.client_tls(), profile.signer(), timeout_s=args.timeout)
    args.coordinator = profile.coordinator
    common: dict[str, Any] = {
        "epsilon": args.epsilon,
        "sites": args.sites,
        "site_timeout_ms": args.site_timeout,
        "assembly": args.assembly,
    }
    try:
        with client:
            result = client.run(args.study, for_command(args.kind).from_args(args), **common)
    except InvalidArgument as exc:
        if exc.remote:  # the coordinator or a node refused it: not a usage error
            raise
        raise UsageError(str(exc)) from None
    if args.json:
        print_json(result.to_json())
    else:
        print(result)
    return 0 if result.answered else 1


def _budget(args: argparse.Namespace) -> int:
    from genogate.client import Budget
    from genogate.wire.v1 import coordinator_pb2 as cpb

    profile = _profile(args)
    with _client(args, profile) as client:
        sites = client.study_budget(args.study, args.sites)
    return _emit(args, lambda: cpb.GetStudyBudgetResponse(sites=sites), lambda: str(Budget.of(args.study, sites)))


def main(argv: list[str] | None = None) -> int:
    args = _parser(lazy=True).parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler

    def where(exc: GenogateError) -> str:
        address = getattr(args, "coordinator", "?")
        if isinstance(exc, Unavailable | DeadlineExceeded) and address not in str(exc):
            return f" (coordinator {address})"
        return ""

    return run(PROG, lambda: handler(args), error_exit=1, where=where)


if __name__ == "__main__":
    raise SystemExit(main())
