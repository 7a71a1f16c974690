"""`warden`: Kubernetes access from the command line, through Warden's REST API.

Configuration: `warden configure --url https://warden.example.com --token wdn_...` writes
~/.config/warden/config (or $XDG_CONFIG_HOME/warden/config, mode 0600); WARDEN_URL and
WARDEN_TOKEN override it. The token is a personal API token from Warden's "API tokens" page.
"""

from __future__ import annotations

import argparse
import base64
import configparser
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from warden_cli import token as oidc_token

TIMEOUT = 60


class CliError(Exception):
    """Something the person must fix; printed without a traceback."""


# --- configuration and HTTP -----------------------------------------------------------------


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "warden" / "config"


def settings() -> tuple[str, str]:
    """The Warden URL and token: the environment first, then the config file."""
    parser = configparser.ConfigParser()
    parser.read(config_path())
    section = parser["warden"] if parser.has_section("warden") else {}
    url = os.environ.get("WARDEN_URL") or section.get("url", "")
    token = os.environ.get("WARDEN_TOKEN") or section.get("token", "")
    if not url or not token:
        raise CliError(
            "Warden is not configured: run `warden configure --url https://warden.example.com "
            "--token wdn_...` (make a token on Warden's API tokens page), or set WARDEN_URL and "
            "WARDEN_TOKEN."
        )
    return url.rstrip("/"), token


class Api:
    """A small client of /api/v1/ that turns error answers into what to do."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        target = f"{self.url}/api/v1/{path.lstrip('/')}"
        if query:
            target += "?" + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v not in (None, "")}, doseq=True
            )
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(target, data=data, method=method)  # noqa: S310 - the configured Warden URL
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise CliError(self._explain(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"Warden at {self.url} does not answer: {reason}") from None
        return json.loads(raw) if raw else None

    def _explain(self, exc: urllib.error.HTTPError) -> str:
        try:
            payload = json.loads(exc.read() or b"{}")
        except ValueError:
            payload = {}
        if exc.code == 401:
            return (
                "Warden refused the token: it may be mistyped, expired or revoked. Make a new one "
                f"at {self.url}/tokens/ and run `warden configure`."
            )
        detail = payload.get("detail") if isinstance(payload, dict) else None
        if not detail and isinstance(payload, dict):
            detail = "; ".join(
                f"{field}: {' '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
                for field, msgs in payload.items()
            )
        if exc.code == 404:
            return detail if detail and detail != "Not found." else "No such thing, or not yours."
        return detail or f"Warden answered {exc.code}."

    def pages(self, path: str, query: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a paged list."""
        items: list[Any] = []
        page = 1
        while True:
            answer = self.call("GET", path, query={**(query or {}), "page": page})
            items.extend(answer["results"])
            if not answer.get("next"):
                return items
            page += 1


# --- commands -------------------------------------------------------------------------------


def cmd_configure(args: argparse.Namespace, out: Any) -> int:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    parser = configparser.ConfigParser()
    parser["warden"] = {"url": args.url.rstrip("/"), "token": args.token}
    api = Api(args.url.rstrip("/"), args.token)
    me = api.call("GET", "me/")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    out.write(f"Configured {path} for {me['username']} at {args.url}.\n")
    return 0


def cmd_access(args: argparse.Namespace, out: Any) -> int:
    held = _api().call("GET", "me/access/")
    if not held:
        out.write("You hold no access. Ask for some with `warden request`.\n")
        return 0
    for item in held:
        until = item["expires_at"] or "standing"
        soon = "  (ends soon)" if item["expiring_soon"] else ""
        out.write(f"{item['role']}  via {item['via']}  until {until}{soon}\n")
        for reach in item["clusters"]:
            out.write(f"    {reach['cluster']}: {reach['what']}, {reach['where']}\n")
    return 0


def _scope(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "environments": args.env or [],
        "tiers": args.tier or [],
        "clusters": args.cluster or [],
        "namespaces": args.namespace or [],
    }


def cmd_request(args: argparse.Namespace, out: Any) -> int:
    api = _api()
    body = {
        "role": args.role,
        **_scope(args),
        "duration": args.duration or None,
        "justification": args.why,
        "ticket": args.ticket,
        "break_glass": args.break_glass,
    }
    preview = api.call("POST", "requests/preview/", body)
    out.write(f"You ask for {preview['role']} for {preview['duration'] or '?'}:\n")
    for reach in preview["reach"]:
        out.write(f"    {reach['cluster']}: {reach['what']}, {reach['where']}\n")
    out.write(f"Approvers: {preview['approvers']}\n")
    if not preview["ok"]:
        for problem in preview["problems"]:
            out.write(f"  ! {problem}\n")
        raise CliError("The request would be refused; nothing was filed.")
    if not args.yes and not _confirm("Submit this request?"):
        out.write("Not submitted.\n")
        return 1
    filed = api.call("POST", "requests/", body)
    if filed["state"] == "active":
        out.write(
            f"Granted at once: request #{filed['id']} is active until {filed['expires_at']}.\n"
        )
    else:
        out.write(f"Request #{filed['id']} is waiting for approval.\n")
    return 0


def _confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_requests(args: argparse.Namespace, out: Any) -> int:
    api = _api()
    path = "requests/inbox/" if args.inbox else "requests/"
    query = {} if args.inbox else {"state": args.state, "mine": "true" if args.mine else None}
    rows = api.pages(path, query)
    if not rows:
        out.write("Nothing to show.\n")
        return 0
    for r in rows:
        where = ", ".join(r["clusters"] or r["environments"] or r["tiers"]) or "every cluster"
        ns = f" in {', '.join(r['namespaces'])}" if r["namespaces"] else ""
        approvals = sum(1 for a in r["approvals"] if a["decision"] == "approve")
        out.write(
            f"#{r['id']}  {r['state']:<9} {r['requester']:<12} {r['role']} on {where}{ns} "
            f"for {r['duration']}  ({approvals}/{r['approvals_required']} approvals)  "
            f"{r['justification']}\n"
        )
    return 0


def cmd_approve(args: argparse.Namespace, out: Any) -> int:
    body: dict[str, Any] = {"comment": args.comment}
    if args.cluster:
        body["clusters"] = args.cluster
    if args.namespace:
        body["namespaces"] = args.namespace
    if args.duration:
        body["duration"] = args.duration
    req = _api().call("POST", f"requests/{args.id}/approve/", body)
    if req["state"] == "active":
        out.write(f"Approved: request #{req['id']} is active until {req['expires_at']}.\n")
    else:
        count = sum(1 for a in req["approvals"] if a["decision"] == "approve")
        out.write(
            f"Approved: request #{req['id']} has {count} of {req['approvals_required']} "
            "approvals.\n"
        )
    return 0


def cmd_deny(args: argparse.Namespace, out: Any) -> int:
    req = _api().call("POST", f"requests/{args.id}/deny/", {"comment": args.reason})
    out.write(f"Denied request #{req['id']}.\n")
    return 0


def cmd_cancel(args: argparse.Namespace, out: Any) -> int:
    req = _api().call("POST", f"requests/{args.id}/cancel/", {"reason": args.reason})
    out.write(f"Request #{req['id']} is {req['state']}.\n")
    return 0


def cmd_end(args: argparse.Namespace, out: Any) -> int:
    req = _api().call("POST", f"requests/{args.id}/end/", {"reason": args.reason})
    out.write(
        f"The access of request #{req['id']} is {req['state']}; it leaves the clusters now.\n"
    )
    return 0


def cmd_why(args: argparse.Namespace, out: Any) -> int:
    # kubectl ... 2>&1 | warden why   reads the message kubectl just printed.
    message = args.message if args.message not in (None, "-") else sys.stdin.read()
    if not message.strip():
        raise CliError("Give the forbidden message, in quotes, or pipe it in.")
    answer = _api().call(
        "POST", "why-forbidden/", {"message": message.strip(), "cluster": args.cluster or ""}
    )
    out.write(f"On {answer['cluster']}, you tried to {answer['attempt']}.\n")
    for note in answer["causes"] + answer["notes"]:
        out.write(f"  * {note}\n")
    for verdict in answer["verdicts"]:
        mark = "allows" if verdict["state"] == "allows" else verdict["state"]
        out.write(f"  {verdict['role']:<12} {mark:<11} {verdict['why']}\n")
    request = answer["request"]
    if answer["already_allowed"]:
        out.write("You already hold a role that should allow it (see above).\n")
    elif request:
        command = f"warden request --role {request['role']} --cluster {request['cluster']}"
        if request.get("namespace"):
            command += f" --namespace {request['namespace']}"
        out.write(f"Smallest role that allows it: {request['role']}. Ask for it with:\n")
        out.write(f'  {command} --for 4h --why "..."\n')
    else:
        out.write("No role of the catalogue allows it here; ask the Warden operators.\n")
    return 0


def kubeconfig_path(given: str | None) -> Path:
    if given:
        return Path(given)
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def _upsert(entries: list[dict[str, Any]], name: str, key: str, value: dict[str, Any]) -> None:
    for entry in entries:
        if entry.get("name") == name:
            entry[key] = value
            return
    entries.append({"name": name, key: value})


def cmd_kubeconfig(args: argparse.Namespace, out: Any) -> int:
    reachable = _api().call("GET", "me/clusters/")
    chosen = next((c for c in reachable if c["name"] == args.cluster), None)
    if chosen is None:
        names = ", ".join(c["name"] for c in reachable) or "none"
        raise CliError(
            f"You hold no access on a cluster named {args.cluster!r} (yours: {names}). "
            "Ask for access with `warden request`."
        )
    path = kubeconfig_path(args.kubeconfig)
    config: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise CliError(f"{path} is not a kubeconfig.")
        config = loaded or {}
    config.setdefault("apiVersion", "v1")
    config.setdefault("kind", "Config")
    for section in ("clusters", "users", "contexts"):
        config[section] = config.get(section) or []
    cluster: dict[str, Any] = {"server": chosen["api_url"]}
    if chosen["ca_bundle"]:
        cluster["certificate-authority-data"] = base64.b64encode(
            chosen["ca_bundle"].encode()
        ).decode()
    name = chosen["name"]
    user_name = f"warden-{name}"
    _upsert(config["clusters"], name, "cluster", cluster)
    if args.issuer:
        _upsert(config["users"], user_name, "user", {"exec": token_exec(args)})
    elif chosen["user_exec"]:
        _upsert(config["users"], user_name, "user", {"exec": chosen["user_exec"]})
    elif not any(u.get("name") == user_name for u in config["users"]):
        config["users"].append({"name": user_name, "user": {}})
        out.write(
            f"Warden names no credential plugin (WARDEN_KUBECONFIG_USER_EXEC): add how you log "
            f"in to the user {user_name!r} in {path}.\n"
        )
    context: dict[str, Any] = {"cluster": name, "user": user_name}
    namespace = args.namespace or (
        chosen["namespaces"][0] if len(chosen["namespaces"]) == 1 else ""
    )
    if namespace:
        context["namespace"] = namespace
    _upsert(config["contexts"], name, "context", context)
    if args.use or not config.get("current-context"):
        config["current-context"] = name
    _write_private(path, yaml.safe_dump(config, sort_keys=False))
    where = f" (namespace {namespace})" if namespace else ""
    out.write(f"Wrote context {name!r}{where} to {path} as {chosen['username']}.\n")
    if chosen["namespaces"] and not namespace:
        out.write(f"Your namespaces there: {', '.join(chosen['namespaces'])}.\n")
    return 0


def token_exec(args: argparse.Namespace) -> dict[str, Any]:
    """A kubeconfig user's exec: `warden token` for this provider and client."""
    plugin_args = ["token", "--issuer", args.issuer, "--client-id", args.client_id]
    if args.ca_file:
        plugin_args += ["--ca-file", str(Path(args.ca_file).resolve())]
    return {
        "apiVersion": oidc_token.EXEC_API_VERSION,
        "command": args.warden_command,
        "args": plugin_args,
        "interactiveMode": "IfAvailable",
        "provideClusterInfo": False,
    }


def cmd_token(args: argparse.Namespace, out: Any) -> int:
    provider = oidc_token.Provider(args.issuer, args.client_id, args.ca_file, args.scopes)
    try:
        token = oidc_token.id_token(provider, interactive=not args.no_sign_in)
    except oidc_token.SignInError as exc:
        raise CliError(str(exc)) from None
    out.write(json.dumps(oidc_token.exec_credential(token)) + "\n")
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (a kubeconfig may hold credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".warden-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_whoami(args: argparse.Namespace, out: Any) -> int:
    me = _api().call("GET", "me/")
    role = " (operator)" if me["is_operator"] else ""
    teams = ", ".join(me["teams"]) or "no team"
    out.write(f"{me['username']}{role}: {teams}\n")
    return 0


def _api() -> Api:
    return Api(*settings())


# --- the parser -----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="warden", description="Your Kubernetes access, from Warden. See `warden CMD -h`."
    )
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("configure", help="save Warden's URL and your API token")
    p.add_argument("--url", required=True, help="e.g. https://warden.example.com")
    p.add_argument("--token", required=True, help="a personal API token (wdn_...)")
    p.set_defaults(run=cmd_configure)

    sub.add_parser("whoami", help="who the token belongs to").set_defaults(run=cmd_whoami)
    sub.add_parser("access", help="the access you hold, where, until when").set_defaults(
        run=cmd_access
    )

    p = sub.add_parser("request", help="ask for access (shows what it grants first)")
    p.add_argument("--role", required=True)
    p.add_argument("--env", action="append", help="environment (dev, staging, prod); repeatable")
    p.add_argument("--tier", action="append", help="tier (tier-0 ... tier-3); repeatable")
    p.add_argument("--cluster", action="append", help="cluster name; repeatable")
    p.add_argument("--namespace", action="append", help="namespace or pattern; repeatable")
    p.add_argument("--for", dest="duration", default="", help="30m, 4h, 2d (default: policy's)")
    p.add_argument("--why", required=True, help="the justification approvers read")
    p.add_argument("--ticket", default="")
    p.add_argument("--break-glass", action="store_true", help="emergency access, audited loudly")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask to confirm")
    p.set_defaults(run=cmd_request)

    p = sub.add_parser("requests", help="requests you can see (yours, and those you decide)")
    p.add_argument("--inbox", action="store_true", help="only those waiting for you to decide")
    p.add_argument("--mine", action="store_true", help="only your own")
    p.add_argument("--state", default="", help="pending, active, denied, ...")
    p.set_defaults(run=cmd_requests)

    p = sub.add_parser("approve", help="approve a request (optionally narrowing it)")
    p.add_argument("id", type=int)
    p.add_argument("--comment", default="")
    p.add_argument("--cluster", action="append", help="only these clusters")
    p.add_argument("--namespace", action="append", help="only these namespaces")
    p.add_argument("--for", dest="duration", default="", help="a shorter duration")
    p.set_defaults(run=cmd_approve)

    p = sub.add_parser("deny", help="deny a request, saying why")
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True)
    p.set_defaults(run=cmd_deny)

    p = sub.add_parser("cancel", help="withdraw your pending request")
    p.add_argument("id", type=int)
    p.add_argument("--reason", default="")
    p.set_defaults(run=cmd_cancel)

    p = sub.add_parser("end", help='end active access early ("I\'m done")')
    p.add_argument("id", type=int)
    p.add_argument("--reason", default="")
    p.set_defaults(run=cmd_end)

    p = sub.add_parser("kubeconfig", help="write a kubeconfig entry for a cluster you can reach")
    p.add_argument("--cluster", required=True)
    p.add_argument("--kubeconfig", help="file to write (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--namespace", help="the context's namespace")
    p.add_argument("--use", action="store_true", help="make it the current context")
    p.add_argument("--issuer", help="sign in with `warden token` at this OIDC issuer")
    p.add_argument("--client-id", default="warden-cli", help="the CLI's client at the issuer")
    p.add_argument("--ca-file", help="a CA bundle for the issuer")
    p.add_argument("--warden-command", default="warden", help="how kubectl runs this CLI")
    p.set_defaults(run=cmd_kubeconfig)

    p = sub.add_parser("token", help="kubectl credential plugin: your ID token (ExecCredential)")
    p.add_argument("--issuer", required=True, help="the OIDC issuer URL")
    p.add_argument("--client-id", default="warden-cli")
    p.add_argument("--ca-file", help="a CA bundle for the issuer")
    p.add_argument("--scopes", default="openid email profile groups offline_access")
    p.add_argument("--no-sign-in", action="store_true", help="fail instead of signing in")
    p.set_defaults(run=cmd_token)

    p = sub.add_parser("why", help='explain a Kubernetes "forbidden" message')
    p.add_argument("message", nargs="?", help='the whole message, in quotes ("-" or none: stdin)')
    p.add_argument("--cluster", help="the cluster it came from (needed when there are several)")
    p.set_defaults(run=cmd_why)
    return top


def main(argv: Sequence[str] | None = None, out: Any = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    try:
        return int(args.run(args, out))
    except CliError as exc:
        sys.stderr.write(f"warden: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
