"""POST /api/device-binding/register and POST /api/device-binding/refresh (DBSC).

Registration: the browser that just logged in sends a proof signed with its new key, whose
``jti`` is the challenge from the login's ``Secure-Session-Registration``. Refresh: the
browser asks for a new bound cookie; without a proof, or with one for a challenge that is
used or stale, it gets 403 and a fresh ``Secure-Session-Challenge`` to sign (the draft's
retry); with a good one, the cookie. Both answer the session instructions, with a challenge
for the next refresh, so that a refresh usually takes one request.

A refused proof is 400 with the reason: a browser then ends its DBSC session (registration:
never starts it). No session or no binding is 401. Both endpoints answer 404 while
``device_binding`` is off.
"""

from __future__ import annotations

from typing import NoReturn

from campus.web.binding import fields, once, policy, state
from campus.web.binding.cookie import LIFETIME, BoundCookie, instructions
from campus.web.binding.proof import ProofError, refresh_proof, registration_proof
from campus.web.binding.state import Binding
from campus.web.handlers.auth import SessionHandler
from campus.web.handlers.base import ApiError


class BindingHandler(SessionHandler):
    """What registration and refresh share: the proof header, refusals, the bound answer."""

    async def prepare(self) -> None:
        if self.services.config.session.device_binding == "off":
            raise ApiError(404, "Not found")
        await super().prepare()

    def proof(self, endpoint: str) -> str | None:
        """The ``Secure-Session-Response`` token, None when absent; 400 when unreadable."""
        raw = self.request.headers.get(fields.RESPONSE)
        if raw is None:
            return None
        token = fields.text(raw)
        if token is None:
            self.refuse(endpoint, ProofError("malformed", "Secure-Session-Response is not a JWT"))
        return token

    def refuse(self, endpoint: str, error: ProofError) -> NoReturn:
        metrics = self.services.metrics
        if metrics is not None:
            metrics.binding_failed_proofs.labels(endpoint, error.reason).inc()
        raise ApiError(400, f"Proof refused: {error}")

    def now(self) -> float:
        return self.session_manager.clock()

    async def take(self, challenge: str, use: state.Use, lifetime: int) -> bool:
        """Use up *challenge*: it must be this session's, for *use*, live, and first."""
        if not state.take(self.session, challenge, use, now=self.now()):
            return False
        return await once.first_use(self.services.sessions.store, challenge, lifetime=lifetime)

    def answer_bound(self, binding: Binding) -> None:
        """A fresh bound cookie, a challenge for the next refresh, and the instructions."""
        cookie = BoundCookie(self.session_manager)
        https = self.session_is_https()
        value = cookie.value(self.session.id)
        self.set_cookie(cookie.name, value, max_age=LIFETIME, **cookie.attributes(https=https))
        lifetime = policy.CHALLENGE_LIFETIME
        challenge = state.issue(self.session, "refresh", now=self.now(), lifetime=lifetime)
        self.set_header(fields.CHALLENGE, fields.challenge(challenge, binding.id))
        self.write(
            instructions(
                binding.id,
                host=self.request.host_name,
                refresh_path=policy.REFRESH_PATH,
                scope=policy.SCOPE,
                cookie=cookie.name,
                attributes=cookie.attribute_text(https=https),
            )
        )


class RegisterHandler(BindingHandler):
    async def post(self) -> None:
        if self.current_user is None:
            raise ApiError(401, "Not logged in")
        token = self.proof("registration")
        if token is None:
            self.refuse("registration", ProofError("missing", "no Secure-Session-Response"))
        try:
            proof = registration_proof(token)
        except ProofError as error:
            self.refuse("registration", error)
        if not await self.take(proof.jti, "register", policy.REGISTRATION_WINDOW):
            unknown = ProofError("challenge", "the challenge is unknown, used or expired")
            self.refuse("registration", unknown)
        binding = state.bind(self.session, proof, self.now())
        if self.services.metrics is not None:
            self.services.metrics.binding_registrations.inc()
        self.answer_bound(binding)


class RefreshHandler(BindingHandler):
    async def post(self) -> None:
        binding = state.binding_of(self.session)
        if self.current_user is None or binding is None:
            raise ApiError(401, "Not logged in")
        claimed = fields.text(self.request.headers.get(fields.SESSION_ID))
        if claimed != binding.id:
            raise ApiError(400, f"{fields.SESSION_ID} does not name this session's binding")
        token = self.proof("refresh")
        if token is None:
            self.challenge(binding)
        try:
            proof = refresh_proof(token, alg=binding.alg, jwk=binding.jwk)
        except ProofError as error:
            self.refuse("refresh", error)
        if not await self.take(proof.jti, "refresh", policy.CHALLENGE_LIFETIME):
            if self.services.metrics is not None:
                self.services.metrics.binding_failed_proofs.labels("refresh", "challenge").inc()
            self.challenge(binding)  # signed by the right key: a used or stale challenge
        if self.services.metrics is not None:
            self.services.metrics.binding_refreshes.inc()
        self.answer_bound(binding)

    def challenge(self, binding: Binding) -> NoReturn:
        """403 with a fresh challenge: the draft's "sign this and try again"."""
        lifetime = policy.CHALLENGE_LIFETIME
        value = state.issue(self.session, "refresh", now=self.now(), lifetime=lifetime)
        header = {fields.CHALLENGE: fields.challenge(value, binding.id)}
        raise ApiError(403, "Sign the challenge in Secure-Session-Challenge", **header)
