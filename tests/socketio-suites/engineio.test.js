// Engine.IO v4 protocol tests against the Engine.IO echo fixture (`eio-fixture`): every
// message comes back as it came. EIO_URL is the fixture's base URL.

import { describe } from "node:test";

import { engineBehaviours } from "./engine-behaviours.js";
import { Endpoint } from "./harness.js";

const base = process.env.EIO_URL ?? "http://localhost:3000";

describe("Engine.IO v4", () => {
  engineBehaviours(new Endpoint(base, "/engine.io/"), { echo: true });
});
