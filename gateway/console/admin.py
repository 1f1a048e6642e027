"""Admin pages: console accounts (add, unlock, remove) and data key rotation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.console.pages import csrf_field, e, message, table
from gateway.console.users import Role
from gateway.errors import GatewayError
from gateway.health.report import when

if TYPE_CHECKING:
    from gateway.console.app import Console, Session

__all__ = ["add_admin_routes"]


def add_admin_routes(app: web.Application, console: Console, page: Any, render: Any) -> None:
    gw = console.gw

    async def users(request: web.Request, s: Session, note: str = "", error: str = "", secret: str = "") -> Any:
        accounts = console.users.load()
        rows = []
        for a in accounts.values():
            actions = ""
            for verb in ("unlock", "remove"):
                if verb == "remove" and a.name == s.user:
                    continue
                actions += (f'<form method="post" action="/users/{verb}" class="inline">{csrf_field(s.csrf)}'
                            f'<input type="hidden" name="name" value="{e(a.name)}">'
                            f'<button type="submit" aria-label="{verb} {e(a.name)}">'
                            f"{verb.title()}</button></form>")  # fmt: skip
            rows.append((e(a.name), e(a.role.value), "locked" if a.locked_until else "", e(when(a.created)), actions))
        body = message(note, "ok") + message(error)
        if secret:
            body += (f'<p class="msg ok" role="status">Enter this key in the new account\'s authenticator app now; '
                     f"it is not shown again: <code>{e(secret)}</code></p>")  # fmt: skip
        body += table(("Account", "Role", "State", "Created", ""), rows, "Console accounts")
        roles = "".join(f'<option value="{r.value}">{r.value}</option>' for r in Role)
        body += (f'<form method="post" action="/users/add" class="card"><h2>Add an account</h2>{csrf_field(s.csrf)}'
                 '<label for="new-name">Name</label><input id="new-name" name="name" required autocomplete="off">'
                 f'<label for="new-role">Role</label><select id="new-role" name="role">{roles}</select>'
                 '<label for="new-password">Password (12 characters or more)</label>'
                 '<input id="new-password" name="password" type="password" minlength="12" required '
                 'autocomplete="new-password"><button type="submit">Add</button></form>'
                 f'<form method="post" action="/keys/rotate" class="card"><h2>Data key</h2>{csrf_field(s.csrf)}'
                 f"<p>Current key id: <code>{e(gw.keyring.current_id)}</code>. Rotating adds a new key for new "
                 "rows; older keys still open older rows.</p>"
                 "<button type=submit>Rotate the data key</button></form>")  # fmt: skip
        return render(s, "Accounts", body, active="/users")

    async def add(request: web.Request, s: Session) -> Any:
        form = await request.post()
        name, role = str(form.get("name", "")).strip(), str(form.get("role", ""))
        try:
            secret = console.users.add(name, Role(role), str(form.get("password", "")))
        except (GatewayError, ValueError) as exc:
            await console.audit(s.user, "console-users-add-refused", str(exc)[:80])
            return await users(request, s, error=f"Not added: {exc}")
        await console.audit(s.user, "console-users-add", f"{name} as {role}")
        return await users(request, s, note=f"Added {name} ({role}).", secret=secret)

    async def change(request: web.Request, s: Session) -> Any:
        verb = request.match_info["verb"]
        name = str((await request.post()).get("name", ""))
        if verb == "remove" and name == s.user:
            return await users(request, s, error="You cannot remove your own account.")
        done = console.users.remove(name) if verb == "remove" else console.users.unlock(name)
        await console.audit(s.user, f"console-users-{verb}", name[:32])
        return await users(
            request,
            s,
            note=f"{'Removed' if verb == 'remove' else 'Unlocked'} {name}." if done else "",
            error="" if done else "No such account.",
        )

    async def rotate(request: web.Request, s: Session) -> Any:
        from gateway.crypto import rotate_key_file
        from gateway.secrets import resolve_secret_path

        try:
            kid = rotate_key_file(resolve_secret_path(gw.config.key_file))
            gw.keyring.reload()
        except (GatewayError, OSError) as exc:
            await console.audit(s.user, "console-keys-rotate-failed", type(exc).__name__)
            return await users(request, s, error=f"Key not rotated: {exc}")
        await console.audit(s.user, "console-keys-rotate", kid)
        return await users(request, s, note=f"Key {kid} is now current.")

    app.router.add_get("/users", page(Role.ADMIN, users))
    app.router.add_post("/users/add", page(Role.ADMIN, add))
    app.router.add_post("/users/{verb:unlock|remove}", page(Role.ADMIN, change))
    app.router.add_post("/keys/rotate", page(Role.ADMIN, rotate))
