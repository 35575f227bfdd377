// The Express app campus replaces, as the reference article builds it: express-session with
// connect-redis, POST /login putting the user (minus password) in req.session, GET /logout
// destroying it. The cut-over tests log in here, then carry the connect.sid cookie to campus.
//
// Environment: REDIS_URL (the test suite's own redis-server), SECRETS (a JSON array, since
// the article's secret has a comma in it; the first signs, all verify — express-session's
// rotation), PREFIX (connect-redis key prefix, default "sess:"), PORT (default 0: any free
// port). Prints "listening on PORT" once ready.
//
// For the benchmark (bench/run.py): STORE=memory keeps sessions in express-session's own
// MemoryStore (no Redis at all); WORKERS=N (N > 1) runs N processes sharing the port through
// node's cluster module, and prints "listening on PORT" once every worker listens.
"use strict";

const cluster = require("node:cluster");
const express = require("express");
const session = require("express-session");
const { RedisStore } = require("connect-redis");
const { createClient } = require("redis");

const appUsers = {
  "ann@campus.test": {
    email: "ann@campus.test",
    name: "Ann",
    roles: ["student"],
    password: "express-password",
  },
  // An admin of the Express app who is not in campus's users file (she left).
  "mallory@gone.example": {
    email: "mallory@gone.example",
    name: "Mallory",
    roles: ["admin"],
    password: "express-password",
  },
};

async function sessionStore() {
  if (process.env.STORE === "memory") return { store: undefined, close: async () => {} };
  const client = createClient({ url: process.env.REDIS_URL });
  client.on("error", (err) => console.error("redis:", err.message));
  await client.connect();
  const store = new RedisStore({ client, prefix: process.env.PREFIX || "sess:" });
  return { store, close: () => client.quit() };
}

async function main() {
  const { store, close } = await sessionStore();

  const app = express();
  app.use(express.json());
  app.use(
    session({
      store, // undefined: express-session's MemoryStore
      secret: JSON.parse(process.env.SECRETS || '["Shh, its a secret!"]'),
      resave: false,
      saveUninitialized: true, // as in the article: every visitor gets a record
    }),
  );

  app.post("/login", (req, res) => {
    const user = appUsers[req.body.email];
    if (user && user.password === req.body.password) {
      const userWithoutPassword = { ...user };
      delete userWithoutPassword.password;
      req.session.user = userWithoutPassword;
      // A "remember me" login: the cookie (and so the record) gets an expiry.
      if (req.body.maxAge) req.session.cookie.maxAge = req.body.maxAge;
      res.status(200).send({ user: userWithoutPassword });
    } else {
      res.status(403).send({ errorMessage: "Permission denied!" });
    }
  });

  app.get("/api/me", (req, res) => {
    if (req.session.user) res.send({ user: req.session.user });
    else res.status(401).send({ errorMessage: "Not logged in" });
  });

  app.post("/cart", (req, res) => {
    req.session.cart = req.body.cart;
    res.send({ cart: req.session.cart });
  });

  app.get("/logout", (req, res) => {
    req.session.destroy((err) => {
      if (err) res.status(500).send("Could not log out.");
      else res.status(200).send({});
    });
  });

  const server = app.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
    if (cluster.isPrimary) console.log(`listening on ${server.address().port}`);
  });
  const stop = () => server.close(() => close().finally(() => process.exit(0)));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// The primary of a cluster serves nothing: it forks the workers (which share its port), says
// "listening" once all of them are, and passes SIGTERM/SIGINT on.
function primary(workers) {
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < workers; i += 1) cluster.fork();
  cluster.on("listening", (worker, address) => {
    listening += 1;
    if (listening === workers) console.log(`listening on ${address.port}`);
  });
  cluster.on("exit", (worker, code) => {
    if (code !== 0 && !stopping) {
      console.error(`worker ${worker.process.pid} exited with ${code}`);
      process.exit(1);
    }
  });
  const stop = () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers)) worker.process.kill("SIGTERM");
    cluster.on("exit", () => {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
    });
    setTimeout(() => process.exit(1), 10000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

const workers = Number(process.env.WORKERS || 1);
if (workers > 1 && cluster.isPrimary) {
  primary(workers);
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
