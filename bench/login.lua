-- wrk script: log in over and over (each request is a full Argon2 verify and a new session).
wrk.method = "POST"
wrk.body = '{"email": "demo@campus.test", "password": "campus-demo"}'
wrk.headers["Content-Type"] = "application/json"
