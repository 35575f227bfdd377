"""Signing in and out with a server-side session: ``python examples/login.py [PORT]``.

POST /signin with the form fields email=ann@example.com and password=correct horse battery
signs in, GET /signin says who is signed in (401 if nobody), DELETE /signin signs out.
"""

import asyncio
import hashlib
import hmac
import secrets
import sys

import tornado.web

from campus.session import SessionManager, SessionMixin
from campus.session.stores.memory import MemoryStore

SALT = secrets.token_bytes(16)


def scrypt(password: str) -> bytes:
    return hashlib.scrypt(password.encode(), salt=SALT, n=2**14, r=8, p=1)


USERS = {"ann@example.com": ("Ann", scrypt("correct horse battery"))}


class SignIn(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        if "user" not in self.session:
            raise tornado.web.HTTPError(401)
        self.write({"user": self.session["user"]})

    async def post(self) -> None:
        email, password = self.get_body_argument("email"), self.get_body_argument("password")
        name, known = USERS.get(email, ("", b""))
        if not hmac.compare_digest(await asyncio.to_thread(scrypt, password), known):
            raise tornado.web.HTTPError(403)
        self.session.regenerate()  # a new id at sign-in: no session fixation
        self.session["user"] = {"email": email, "name": name}
        self.write({"user": self.session["user"]})

    def delete(self) -> None:
        self.session.destroy()  # the record is deleted and the cookie expired
        self.write({})


async def main(port: int) -> None:
    sessions = SessionManager(MemoryStore(max_sessions=10_000), secrets=secrets.token_hex(32))
    app = tornado.web.Application([(r"/signin", SignIn)], session_manager=sessions)
    app.listen(port, "127.0.0.1")
    print(f"login: listening on http://127.0.0.1:{port}/signin", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8888))
