"""Device-bound sessions: W3C Device Bound Session Credentials (DBSC), as Chrome ships it.

A browser that supports it answers the ``Secure-Session-Registration`` header of a login with
a key pair it cannot export and a proof signed with it; campus keeps the public key in the
session record and sets a short-lived cookie that the browser renews by signing challenges.
Once a session is bound, its session cookie alone no longer opens it.

- :mod:`.proof`: the proof JWTs (PyJWT with ``cryptography``): type, algorithm, key, signature.
- :mod:`.fields`: the structured header fields (``http-sfv``).
- :mod:`.state`: what a binding keeps in the session (key, hashed single-use challenges).
- :mod:`.once`: a challenge's first use, claimed atomically in the store.
- :mod:`.cookie`: the short-lived bound cookie and the session instructions naming it.
- :mod:`.policy`: what login, every API request and the two endpoints do with all that.
"""
