/**
 * Encryption at rest: the field cipher (ChaCha20-Poly1305 and AES-256-GCM, bound to tenant, session
 * and field; key ids; rotation), the keyring settings, a raw dump of a real
 * Redis that holds no trace of a secret written through the API, ciphertexts
 * copied between sessions and keys failing to decrypt, the start refused
 * without keys, and key rotation with `npm run reencrypt`.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, randomInt, randomUUID } from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { App } from "../src/app.js";
import { AccessLevel, Code, ConnectError, createSessionClient, EventType, type SessionClient } from "@sessiond/client";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { KeyedFieldCipher, DecryptError, METADATA_FIELD, PLAINTEXT_CIPHER, SEAL_ALGORITHMS, dataField, sealedKeyId } from "../src/crypto/field-cipher.js";
import { Keyring, parseKeyring } from "../src/crypto/keyring.js";
import { cipherForConfig } from "../src/crypto/cipher-for-config.js";
import { pino } from "pino";
import { RedisKeys } from "../src/store/redis/keys.js";
import { reencrypt } from "../src/tools/reencrypt.js";
import { useRedisServer } from "./support/redis-server.js";
import { captureLogs, startTestApp, waitForWatchers } from "./support/server.js";
import { metricValue } from "./support/attack.js";
import { rawDump } from "./support/raw-dump.js";
import { entryFields } from "./support/event-entries.js";

const silentLogger = pino({ level: "silent" });

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const key = (id: string): string => `${id}:${randomBytes(32).toString("base64")}`;
const K1 = key("k1");
const K2 = key("k2");

describe("field cipher", () => {
  const binding = { tenant: "acme", sessionId: randomUUID(), field: METADATA_FIELD };
  const cipher = new KeyedFieldCipher(parseKeyring(K1));

  for (const algorithm of SEAL_ALGORITHMS) {
    test(`${algorithm}: round-trips, with a fresh nonce per value and the key id in the ciphertext`, () => {
      const sealing = new KeyedFieldCipher(parseKeyring(K1), false, algorithm);
      const a = sealing.seal('{"x":"secret"}', binding);
      const b = sealing.seal('{"x":"secret"}', binding);
      assert.notEqual(a, b);
      assert.equal(sealedKeyId(a), "k1");
      assert.ok(!a.includes("secret"));
      assert.equal(sealing.open(a, binding), '{"x":"secret"}');
    });

    test(`${algorithm}: a ciphertext moved to another tenant, session or field, or changed, does not open`, () => {
      const sealing = new KeyedFieldCipher(parseKeyring(K1), false, algorithm);
      const sealed = sealing.seal('"v"', { ...binding, field: dataField("a") });
      for (const other of [
        { ...binding, field: dataField("b") },
        { ...binding, field: METADATA_FIELD },
        { ...binding, sessionId: randomUUID(), field: dataField("a") },
        { ...binding, tenant: "globex", field: dataField("a") },
      ]) {
        assert.throws(() => sealing.open(sealed, other), DecryptError);
      }
      // Opened once at its own place (and so remembered), it still opens nowhere else, and again where it belongs.
      assert.equal(sealing.open(sealed, { ...binding, field: dataField("a") }), '"v"');
      assert.equal(sealing.open(sealed, { ...binding, field: dataField("a") }), '"v"');
      for (const other of [
        { ...binding, field: dataField("b") },
        { ...binding, sessionId: randomUUID(), field: dataField("a") },
        { ...binding, tenant: "globex", field: dataField("a") },
      ]) {
        assert.throws(() => sealing.open(sealed, other), DecryptError);
      }
      assert.equal(sealing.open(sealed, { ...binding, field: dataField("a") }), '"v"');
      // Replace the second-to-last character (a fully significant base64url digit of the tag) with a different one.
      const flipped = sealed.slice(0, -2) + (sealed.at(-2) === "A" ? "B" : "A") + sealed.slice(-1);
      assert.throws(() => sealing.open(flipped, { ...binding, field: dataField("a") }), DecryptError);
      // "data:" + a key cannot collide with another binding (the AAD is a JSON array).
      const tricky = sealing.seal('"v"', { tenant: "a", sessionId: binding.sessionId, field: dataField('x","y') });
      assert.throws(() => sealing.open(tricky, { tenant: 'a","x', sessionId: binding.sessionId, field: dataField("y") }), DecryptError);
    });
  }

  test("rotation: new writes use the first key, older keys still open; unknown keys fail", () => {
    const old = cipher.seal("1", binding);
    const rotated = new KeyedFieldCipher(parseKeyring(`${K2},${K1}`));
    assert.equal(rotated.open(old, binding), "1");
    assert.equal(sealedKeyId(rotated.seal("1", binding)), "k2");
    assert.throws(() => new KeyedFieldCipher(parseKeyring(K2)).open(old, binding), /unknown key/);
  });

  test("stored forms follow the documented construction under every key of the ring, so what earlier versions wrote still opens and matches", () => {
    // Built here from the key bytes with node:crypto alone: the cipher's prepared keys must give exactly these forms.
    const ring = parseKeyring(`${K2},${K1}`);
    const rotated = new KeyedFieldCipher(ring);
    const place = { tenant: 'ac"me', sessionId: randomUUID(), field: dataField("k\u00e9y") };
    const aad = Buffer.from(JSON.stringify(["sessiond/v1", place.tenant, place.sessionId, place.field]), "utf8");
    const derived = (id: string, info: string): Buffer => Buffer.from(hkdfSync("sha256", ring.get(id)?.key ?? Buffer.alloc(0), Buffer.alloc(0), info, 32));
    for (const id of ["k1", "k2"]) {
      const iv = randomBytes(12);
      const enc = createCipheriv("aes-256-gcm", ring.get(id)?.key ?? Buffer.alloc(0), iv);
      enc.setAAD(aad);
      const body = Buffer.concat([enc.update('{"v":"\u00e9"}', "utf8"), enc.final()]);
      assert.equal(rotated.open(`e1:${id}:${Buffer.concat([iv, body, enc.getAuthTag()]).toString("base64url")}`, place), '{"v":"\u00e9"}');
      const tagged = `${id}.${createHmac("sha256", derived(id, "sessiond/record-tag/v1"))
        .update(JSON.stringify(["sessiond/v1", place.tenant, place.sessionId, place.field, "text"]), "utf8")
        .digest()
        .subarray(0, 16)
        .toString("base64url")}`;
      assert.equal(rotated.tagMatches(tagged, "text", place), true);
      assert.equal(rotated.tagMatches(tagged, "other", place), false);
    }
    // ChaCha20-Poly1305 (the default) under the key derived for it, built and opened with node:crypto.
    for (const id of ["k1", "k2"]) {
      const nonce = randomBytes(12);
      const enc = createCipheriv("chacha20-poly1305", derived(id, "sessiond/seal/chacha20-poly1305/v1"), nonce, { authTagLength: 16 });
      const message = Buffer.from('{"v":"\u00e9"}', "utf8");
      enc.setAAD(aad, { plaintextLength: message.length });
      const body = Buffer.concat([enc.update(message), enc.final()]);
      assert.equal(rotated.open(`e2:${id}:${Buffer.concat([nonce, body, enc.getAuthTag()]).toString("base64url")}`, place), '{"v":"\u00e9"}');
    }
    const sealed = rotated.seal("x\u00e9", place);
    assert.ok(sealed.startsWith("e2:k2:") && rotated.sealedAsNow(sealed));
    const blob = Buffer.from(sealed.slice("e2:k2:".length), "base64url");
    const dec = createDecipheriv("chacha20-poly1305", derived("k2", "sessiond/seal/chacha20-poly1305/v1"), blob.subarray(0, 12), { authTagLength: 16 });
    dec.setAAD(aad, { plaintextLength: blob.length - 28 });
    dec.setAuthTag(blob.subarray(blob.length - 16));
    assert.equal(Buffer.concat([dec.update(blob.subarray(12, blob.length - 16)), dec.final()]).toString("utf8"), "x\u00e9");
    // ENCRYPTION_CIPHER=aes-256-gcm: AES-256-GCM under the configured key itself, as versions before the setting wrote.
    const gcm = new KeyedFieldCipher(ring, false, "aes-256-gcm");
    const gcmSealed = gcm.seal("x\u00e9", place);
    assert.ok(gcmSealed.startsWith("e1:k2:") && gcm.sealedAsNow(gcmSealed) && !rotated.sealedAsNow(gcmSealed) && !gcm.sealedAsNow(sealed));
    const gcmBlob = Buffer.from(gcmSealed.slice("e1:k2:".length), "base64url");
    const gcmDec = createDecipheriv("aes-256-gcm", ring.get("k2")?.key ?? Buffer.alloc(0), gcmBlob.subarray(0, 12));
    gcmDec.setAAD(aad);
    gcmDec.setAuthTag(gcmBlob.subarray(gcmBlob.length - 16));
    assert.equal(Buffer.concat([gcmDec.update(gcmBlob.subarray(12, gcmBlob.length - 16)), gcmDec.final()]).toString("utf8"), "x\u00e9");
    // Either reads the other's; neither key serves the other algorithm (a GCM value relabelled e2 does not open).
    assert.equal(gcm.open(sealed, place), "x\u00e9");
    assert.equal(rotated.open(gcmSealed, place), "x\u00e9");
    assert.throws(() => rotated.open(`e2:${gcmSealed.slice(3)}`, place), DecryptError);
    assert.throws(() => rotated.open(`e1:${sealed.slice(3)}`, place), DecryptError);
    assert.match(rotated.tag("text", place), /^k2\./);
    const message = JSON.stringify(["sessiond/v1", "acme", "user", "alice"]);
    assert.deepEqual(
      rotated.indexNames("alice", { tenant: "acme", kind: "user" }),
      ["k2", "k1"].map((id) => createHmac("sha256", derived(id, "sessiond/index-name/v1")).update(message, "utf8").digest("base64url")),
    );
  });

  test("record tags and index names are createHmac's bytes for random places, messages and keys (the prepared HMAC and the cut tag)", () => {
    for (let round = 0; round < 40; round++) {
      const ring = parseKeyring(`${key("p")},${key("q")}`);
      const fresh = new KeyedFieldCipher(ring);
      const derived = (id: string, info: string): Buffer => Buffer.from(hkdfSync("sha256", ring.get(id)?.key ?? Buffer.alloc(0), Buffer.alloc(0), info, 32));
      const text = (n: number): string => Array.from({ length: n }, () => String.fromCodePoint(randomInt(2) === 0 ? 32 + randomInt(95) : 0xa0 + randomInt(0x3000))).join("");
      const place = { tenant: text(randomInt(12)), sessionId: randomInt(4) === 0 ? "" : randomUUID(), field: randomInt(2) === 0 ? METADATA_FIELD : dataField(text(randomInt(20))) };
      for (const message of ["", text(1), text(randomInt(60)), text(100 + randomInt(2000))]) {
        const mac = createHmac("sha256", derived("p", "sessiond/record-tag/v1"))
          .update(JSON.stringify(["sessiond/v1", place.tenant, place.sessionId, place.field, message]), "utf8")
          .digest();
        assert.equal(fresh.tag(message, place), `p.${mac.subarray(0, 16).toString("base64url")}`);
        assert.equal(fresh.tagMatches(fresh.tag(message, place), message, place), true);
        const name = { tenant: place.tenant, kind: "request_id" };
        const named = JSON.stringify(["sessiond/v1", name.tenant, name.kind, message]);
        assert.deepEqual(
          fresh.indexNames(message, name),
          ["p", "q"].map((id) => createHmac("sha256", derived(id, "sessiond/index-name/v1")).update(named, "utf8").digest("base64url")),
        );
      }
    }
  });

  test("with keys a plain value is refused unless migrating; without keys a sealed value is refused, not returned", () => {
    assert.throws(() => cipher.open('{"a":1}', binding), DecryptError);
    assert.throws(() => cipher.open('"v"', { ...binding, field: dataField("k") }), DecryptError);
    assert.equal(new KeyedFieldCipher(parseKeyring(K1), true).open('{"a":1}', binding), '{"a":1}');
    assert.equal(PLAINTEXT_CIPHER.seal("x", binding), "x");
    assert.throws(() => PLAINTEXT_CIPHER.open(cipher.seal("x", binding), binding), DecryptError);
  });

  test("keys are validated with messages that never show key material", () => {
    const material = randomBytes(16).toString("base64");
    const full = randomBytes(32).toString("base64");
    const cases = [
      { ENCRYPTION_KEYS: `k1:${material}` },
      { ENCRYPTION_KEYS: "nocolon" },
      { ENCRYPTION_KEYS: `${K1},${K1}` },
      { ENCRYPTION_KEYS: "bad id:AAAA" },
      // Swapped entries (key:id) put the key where the id belongs.
      { ENCRYPTION_KEYS: `${full}:k1` },
      { ENCRYPTION_KEYS: `${K1},${full}:k2` },
      { ENCRYPTION_KEYS: `${full.slice(0, 20)}:${full.slice(20)}` },
    ];
    for (const env of cases) {
      assert.throws(
        () => loadConfig(env),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.message.startsWith("ENCRYPTION_KEYS") &&
          !e.message.includes(material) &&
          !e.message.includes(full.slice(0, 12)) &&
          !e.message.includes(full.slice(20, 32)),
      );
    }
    // Split inside the key where the part before ':' looks like an id: still never quoted.
    const idLike = "Zq7Xw2Kp9Lm4Nv8Rt1Ys";
    assert.throws(
      () => loadConfig({ ENCRYPTION_KEYS: `${idLike}:${full.slice(20)}` }),
      (e: unknown) => e instanceof ConfigError && !e.message.includes(idLike) && !e.message.includes(full.slice(20, 32)),
    );
    assert.deepEqual(loadConfig({ ENCRYPTION_KEYS: `${K2}\n${K1}` }).encryption.keyring?.ids, ["k2", "k1"]);
    assert.equal(loadConfig({ ENCRYPTION_KEYS: K1 }).encryption.algorithm, "chacha20-poly1305");
    assert.equal(loadConfig({ ENCRYPTION_KEYS: K1, ENCRYPTION_CIPHER: "aes-256-gcm" }).encryption.algorithm, "aes-256-gcm");
    assert.throws(
      () => loadConfig({ ENCRYPTION_KEYS: K1, ENCRYPTION_CIPHER: "aes-128-cbc" }),
      (e: unknown) => e instanceof ConfigError && e.message.includes("ENCRYPTION_CIPHER") && e.message.includes("chacha20-poly1305, aes-256-gcm"),
    );
    assert.throws(() => new Keyring([]), /no encryption key/);
  });
});

function isSealedText(value: string): boolean {
  return value.startsWith("e2:k1:");
}

/** The data hash field (a keyed HMAC) under which the service keeps data key `key` of tenant "default" with K1 primary. */
function dataToken(key: string): string {
  return (new KeyedFieldCipher(parseKeyring(K1)).indexNames(key, { tenant: "default", kind: "data_key" })[0] ?? "").slice(0, 22);
}


describe("encryption at rest on Redis", () => {
  const redis = useRedisServer();

  async function withApp(env: Record<string, string>, fn: (app: App, client: SessionClient) => Promise<void>): Promise<void> {
    const app = await startTestApp({ redisUrl: redis.url, env: { SWEEP_INTERVAL: "50ms", ...env } });
    try {
      await fn(app, createSessionClient(app.url));
    } finally {
      await app.close();
    }
  }

  test("Redis without a key refuses to start; ALLOW_PLAINTEXT=true starts and stores plaintext", async () => {
    await assert.rejects(
      startTestApp({ redisUrl: redis.url, env: { ENCRYPTION_KEYS: "" } }),
      (e: unknown) => e instanceof ConfigError && /ENCRYPTION_KEYS/.test(e.message) && /ALLOW_PLAINTEXT/.test(e.message),
    );
    await redis.raw.flushall();
    await withApp({ ENCRYPTION_KEYS: "", ALLOW_PLAINTEXT: "true" }, async (_app, client) => {
      await client.createSession({ userId: "u", dataSource: "d", metadata: { note: "plain-visible" } });
      assert.ok((await rawDump(redis.raw)).includes("plain-visible"), "the dump would see a plaintext secret");
    });
  });

  test("every Redis mode (one server, Sentinel, Cluster) without a key refuses to start; ALLOW_PLAINTEXT=true stores plaintext, never under a key that dies with the process", () => {
    const modes = [
      { REDIS_URL: "redis://127.0.0.1:6379" },
      { REDIS_URL: "", REDIS_SENTINELS: "127.0.0.1:26379", REDIS_SENTINEL_MASTER: "m" },
      { REDIS_URL: "", REDIS_CLUSTER_NODES: "127.0.0.1:7000" },
    ];
    for (const mode of modes) {
      assert.throws(
        () => cipherForConfig(loadConfig(mode), silentLogger),
        (e: unknown) => e instanceof ConfigError && /ENCRYPTION_KEYS/.test(e.message),
        JSON.stringify(mode),
      );
      assert.equal(cipherForConfig(loadConfig({ ...mode, ALLOW_PLAINTEXT: "true" }), silentLogger), PLAINTEXT_CIPHER, JSON.stringify(mode));
    }
    // Only the in-memory store (its data dies with the process) gets a key of its own.
    assert.equal(cipherForConfig(loadConfig({ REDIS_URL: "" }), silentLogger).encrypts, true);
  });

  test("a secret written through every API path leaves no trace in a raw dump of Redis, nor do user ids, data sources, request ids or data key names", async () => {
    await redis.raw.flushall();
    const secret = `s3cr3t-${randomUUID()}`;
    const user = `alice-${randomUUID()}@example.com`;
    const user2 = `bob-${randomUUID()}@example.com`;
    const source = `source-${randomUUID()}`;
    const source2 = `moved-${randomUUID()}`;
    const [k1, k2, k3] = [`card-${randomUUID()}`, `iban-${randomUUID()}`, `ssn-${randomUUID()}`];
    await withApp({ ENCRYPTION_KEYS: K1 }, async (app, client) => {
      const events: string[] = [];
      const eventNames: string[] = [];
      const controller = new AbortController();
      const watching = (async () => {
        try {
          for await (const res of client.watchSessions({}, { signal: controller.signal, timeoutMs: 30_000 })) {
            if (res.event?.type !== EventType.HEARTBEAT) {
              events.push(JSON.stringify(res.event?.session?.metadata ?? {}));
              eventNames.push(res.event?.session?.userId ?? "", res.event?.session?.dataSource ?? "", ...(res.event?.dataKeys ?? []));
            }
          }
        } catch {
          // aborted
        }
      })();
      await waitForWatchers(app, 1);
      const requestId = `request-${randomUUID()}`;
      const made = await client.createSession({ userId: user, dataSource: source, accessLevel: AccessLevel.WRITE, metadata: { secret }, requestId });
      const id = made.session?.sessionId ?? "";
      // The request id is stored only as a keyed HMAC, and a retry still finds the session by it.
      const retried = await client.createSession({ userId: user, dataSource: source, requestId });
      assert.equal(retried.created, false);
      assert.equal(retried.session?.sessionId, id);
      await client.updateSession({ sessionId: id, metadata: { secret, again: secret } });
      await client.updateSession({ sessionId: id, metadata: { merged: secret }, mergeMetadata: true });
      await client.setSessionData({ sessionId: id, key: k1, value: { kind: { case: "stringValue", value: secret } } });
      await client.setSessionData({ sessionId: id, key: k2, value: { kind: { case: "structValue", value: { fields: { s: { kind: { case: "stringValue", value: secret } } } } } } });
      await client.setSessionData({ sessionId: id, key: k3, value: { kind: { case: "stringValue", value: secret } } });
      await client.deleteSessionData({ sessionId: id, key: k3 });
      await client.extendSession({ sessionId: id, ttl: durationFromMs(600_000) });
      // Reads come back decrypted.
      const got = await client.getSession({ sessionId: id });
      assert.deepEqual(got.session?.metadata, { secret, again: secret, merged: secret });
      assert.deepEqual((await client.getSessionData({ sessionId: id, key: k1 })).value?.kind, { case: "stringValue", value: secret });
      const listed = await client.listSessionData({ sessionId: id, includeValues: true });
      assert.deepEqual(Object.keys(listed.values).sort(), [k1, k2].sort());
      assert.deepEqual((await client.listSessionData({ sessionId: id })).keys.sort(), [k1, k2].sort());
      assert.equal(got.session?.userId, user);
      assert.equal(got.session?.dataSource, source);
      const byUser = (await client.listSessions({ userId: user })).sessions;
      assert.equal(byUser.length, 1);
      assert.equal(byUser[0]?.metadata?.["secret"], secret);
      assert.equal(byUser[0]?.userId, user);
      assert.deepEqual((await client.listSessions({ dataSource: source })).sessions.map((x) => x.sessionId), [id]);
      assert.deepEqual((await client.listSessions({ userId: user, dataSource: source })).sessions.map((x) => x.sessionId), [id]);
      assert.deepEqual((await client.getSessionMetrics({})).activeByDataSource, { [source]: 1n });

      const closing = (await client.createSession({ userId: user, dataSource: source, accessLevel: AccessLevel.WRITE, metadata: { secret } })).session?.sessionId ?? "";
      // A data source changed by an update is named by its new name everywhere.
      await client.updateSession({ sessionId: closing, dataSource: source2 });
      assert.deepEqual((await client.getSessionMetrics({})).activeByDataSource, { [source]: 1n, [source2]: 1n });
      assert.deepEqual((await client.listSessions({ dataSource: source2 })).sessions.map((x) => x.sessionId), [closing]);
      await client.setSessionData({ sessionId: closing, key: k1, value: { kind: { case: "stringValue", value: secret } } });
      await client.clearSessionData({ sessionId: closing });
      await client.closeSession({ sessionId: closing });
      const archived = (await client.getSession({ sessionId: closing, includeEnded: true })).session;
      assert.equal(archived?.metadata?.["secret"], secret, "the archive opens");
      assert.equal(archived?.userId, user);
      assert.equal(archived?.dataSource, source2);

      const expiring = (await client.createSession({ userId: user2, dataSource: source, ttl: durationFromMs(1000), metadata: { secret } })).session?.sessionId ?? "";
      await sleep(1300);
      const expired = (await client.getSession({ sessionId: expiring, includeEnded: true })).session;
      assert.equal(expired?.metadata?.["secret"], secret);
      assert.equal(expired?.userId, user2);

      // Events travel on their own stream: wait (bounded) for one with the secret before stopping it.
      for (const deadline = Date.now() + 5000; !events.some((e) => e.includes(secret)) && Date.now() < deadline; ) await sleep(20);
      controller.abort();
      await watching;
      assert.ok(events.some((e) => e.includes(secret)), "watch events carry the decrypted metadata");
      for (const name of [user, user2, source, source2, k1, k2, k3]) assert.ok(eventNames.includes(name), "watch events carry the names in the clear");

      const dump = await rawDump(redis.raw);
      assert.ok(dump.includes(id), "the dump covers the session's keys");
      assert.ok(dump.includes("e2:k1:"), "values are stored sealed");
      assert.ok(!dump.includes(secret), "no trace of the secret in Redis");
      assert.ok(!dump.includes(Buffer.from(secret).toString("base64")), "not even base64-encoded");
      assert.ok(!dump.includes(requestId) && !dump.includes(requestId.slice(8, 30)), "no trace of the request id");
      for (const [what, name] of Object.entries({ user, user2, source, source2, k1, k2, k3 })) {
        const core = name.slice(name.indexOf("-") + 1, name.indexOf("-") + 24);
        assert.ok(!dump.includes(core), `no trace of ${what} in Redis`);
        assert.ok(!dump.includes(Buffer.from(name).toString("base64").slice(0, 20)), `not even base64-encoded (${what})`);
      }
    });
  });

  test("a ciphertext copied to another session, data key or tenant fails to decrypt (INTERNAL), nothing leaks", async () => {
    await redis.raw.flushall();
    await withApp({ ENCRYPTION_KEYS: K1 }, async (_app, client) => {
      const a = (await client.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { who: "a-secret" } })).session?.sessionId ?? "";
      const b = (await client.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { who: "b" } })).session?.sessionId ?? "";
      await client.setSessionData({ sessionId: a, key: "x", value: { kind: { case: "stringValue", value: "a-data" } } });
      await client.setSessionData({ sessionId: b, key: "x", value: { kind: { case: "stringValue", value: "b-data" } } });
      await client.setSessionData({ sessionId: a, key: "y", value: { kind: { case: "stringValue", value: "a-y" } } });
      const keys = new RedisKeys("sd:", "default");

      const internal = async (p: Promise<unknown>, what: string): Promise<void> => {
        await assert.rejects(p, (e: unknown) => {
          assert.ok(e instanceof ConnectError, what);
          assert.equal(e.code, Code.Internal, `${what}: ${e.message}`);
          assert.ok(!e.message.includes("a-secret") && !e.message.includes("a-data"), what);
          return true;
        });
      };
      // a's metadata into b's record.
      await redis.raw.hset(keys.record(b), "m", String(await redis.raw.hget(keys.record(a), "m")));
      await internal(client.getSession({ sessionId: b }), "metadata copied to another session");
      // a's data value x into a's key y, and into b's key x.
      const [x, y] = [dataToken("x"), dataToken("y")];
      await redis.raw.hset(keys.data(a), y, String(await redis.raw.hget(keys.data(a), x)));
      await internal(client.getSessionData({ sessionId: a, key: "y" }), "value copied to another key");
      await redis.raw.hset(keys.data(b), x, String(await redis.raw.hget(keys.data(a), x)));
      await internal(client.getSessionData({ sessionId: b, key: "x" }), "value copied to another session");
      await internal(client.listSessionData({ sessionId: b, includeValues: true }), "listing with a copied value");
      // The untouched value still opens.
      assert.deepEqual((await client.getSessionData({ sessionId: a, key: "x" })).value?.kind, { case: "stringValue", value: "a-data" });
    });
  });

  test("an older ciphertext or sealed name copied back from the event log or another record is refused: INTERNAL, one log line without values, counted", async () => {
    await redis.raw.flushall();
    const logs = captureLogs("info");
    const app = await startTestApp({ redisUrl: redis.url, logger: logs.logger, env: { ENCRYPTION_KEYS: K1 } });
    try {
      const client = createSessionClient(app.url);
      const keys = new RedisKeys("sd:", "default");
      const unreadable = (): Promise<number> => metricValue(app.url, 'sessiond_unreadable_entries_total{kind="record"}');
      const internal = (e: unknown): boolean => {
        assert.ok(e instanceof ConnectError);
        assert.equal(e.code, Code.Internal, e.message);
        assert.ok(!e.message.includes("old-secret") && !e.message.includes("alice"), "the error quotes no value");
        return true;
      };
      const make = async (metadata: Record<string, string>, userId = "alice", dataSource = "src-a"): Promise<string> =>
        (await client.createSession({ userId, dataSource, accessLevel: AccessLevel.WRITE, metadata })).session?.sessionId ?? "";
      /** A field of the session's logged event of the given kind (the log holds every version of its metadata). */
      const logged = async (sessionId: string, kind: string, field: string): Promise<string> => {
        const entries = (await redis.raw.xrange("sd:ev", "-", "+")) as [string, string[]][];
        const found = entries.map(([, f]) => entryFields(f)).find((f) => f.get("i") === sessionId && f.get("k") === kind);
        assert.ok(found, `a ${kind} event of the session`);
        return found.get(field) ?? "";
      };

      // Metadata: version 1 from the log, written back over version 2 of the record.
      const a = await make({ note: "old-secret" });
      await client.updateSession({ sessionId: a, metadata: { note: "new" } });
      const v1 = await logged(a, "created", "m");
      assert.ok(isSealedText(v1));
      const before = await unreadable();
      await redis.raw.hset(keys.record(a), "m", v1);
      await assert.rejects(client.getSession({ sessionId: a }), internal, "an old metadata ciphertext from the log");
      assert.ok(!(await client.listSessions({})).sessions.some((x) => x.sessionId === a), "left out of listings");
      assert.ok((await unreadable()) >= before + 2, "counted");
      const lines = logs.lines().filter((l) => l["msg"] === "unreadable session record refused" && l["sessionId"] === a);
      assert.equal(lines.length, 1, "one error line for the direct read (the listing's is the session layer's)");
      assert.equal(lines[0]?.["level"], 50);
      assert.ok(!JSON.stringify(logs.lines()).includes("old-secret") && !JSON.stringify(logs.lines()).includes("alice"), "no value or user id in any log line");
      // Writing the current ciphertext back restores it: the refusal is about the copy, nothing else.
      const current = await logged(a, "updated", "m");
      await redis.raw.hset(keys.record(a), "m", current);
      assert.deepEqual((await client.getSession({ sessionId: a })).session?.metadata, { note: "new" });

      // The same for an archive: the metadata of the created event packed into the closed session's archive.
      const b = await make({ note: "old-secret" });
      await client.updateSession({ sessionId: b, metadata: { note: "final" } });
      await client.closeSession({ sessionId: b });
      const bv1 = await logged(b, "created", "m");
      await redis.raw.eval("local v = { cmsgpack.unpack(redis.call('GET', KEYS[1])) } v[7] = ARGV[1] redis.call('SET', KEYS[1], cmsgpack.pack(unpack(v)), 'KEEPTTL')", 1, keys.archive(b), bv1);
      await assert.rejects(client.getSession({ sessionId: b, includeEnded: true }), internal, "an old metadata ciphertext in an archive");

      // Sealed names: another session's sealed user, or an older sealed data source from the log.
      const c = await make({}, "carol", "src-c");
      const d = await make({}, "dave", "src-d");
      await redis.raw.hset(keys.record(d), "U", String(await redis.raw.hget(keys.record(c), "U")));
      await assert.rejects(client.getSession({ sessionId: d }), internal, "another user's sealed name");
      await client.updateSession({ sessionId: c, dataSource: "src-c2" });
      await redis.raw.hset(keys.record(c), "D", await logged(c, "created", "D"));
      await assert.rejects(client.getSession({ sessionId: c }), internal, "an older sealed data source");

      // A data value's sealed key name cannot be swapped either: value and name of key x under key y's token.
      const e = await make({});
      await client.setSessionData({ sessionId: e, key: "x", value: { kind: { case: "stringValue", value: "old-secret" } } });
      await client.setSessionData({ sessionId: e, key: "y", value: { kind: { case: "stringValue", value: "other" } } });
      await redis.raw.hset(keys.data(e), dataToken("y"), String(await redis.raw.hget(keys.data(e), dataToken("x"))));
      await assert.rejects(client.getSessionData({ sessionId: e, key: "y" }), internal, "a data entry copied to another key");
    } finally {
      await app.close();
    }
  });

  test("key rotation and a change of cipher: old keys and AES-256-GCM values keep reading, npm run reencrypt rewrites everything under the primary key and cipher", async () => {
    await redis.raw.flushall();
    const ids: string[] = [];
    let archived = "";
    let rotated = "";
    await withApp({ ENCRYPTION_KEYS: K1, ENCRYPTION_CIPHER: "aes-256-gcm" }, async (_app, client) => {
      for (let i = 0; i < 3; i++) {
        const id = (await client.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { i } })).session?.sessionId ?? "";
        await client.setSessionData({ sessionId: id, key: "v", value: { kind: { case: "numberValue", value: i } } });
        ids.push(id);
      }
      archived = (await client.createSession({ userId: "u", dataSource: "d", metadata: { archived: true } })).session?.sessionId ?? "";
      rotated = (await client.createSession({ userId: "u", dataSource: "d", requestId: "rotation-request" })).session?.sessionId ?? "";
      await client.closeSession({ sessionId: archived });
    });
    const sealedValues = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const k of await redis.raw.keys("sd:default:{*")) {
        if (k.endsWith(":a") && (await redis.raw.type(k)) === "string") {
          // An archive: one MessagePack string whose 7th value is the metadata (write_archive in lua/prelude.ts).
          out.push(String(await redis.raw.eval("local v = { cmsgpack.unpack(redis.call('GET', KEYS[1])) } return v[7]", 1, k)));
          continue;
        }
        if ((await redis.raw.type(k)) !== "hash") continue;
        const h = await redis.raw.hgetall(k);
        for (const [f, v] of Object.entries(h)) if (k.endsWith(":d") || f === "m") out.push(v);
      }
      return out;
    };
    assert.ok((await sealedValues()).every((v) => v.startsWith("e1:k1:")));

    await withApp({ ENCRYPTION_KEYS: `${K2},${K1}` }, async (_app, client) => {
      assert.deepEqual((await client.getSession({ sessionId: ids[0] ?? "" })).session?.metadata, { i: 0 });
      // A create retried after the rotation still finds the session made under the old primary key's request-id HMAC.
      const retry = await client.createSession({ userId: "u", dataSource: "d", requestId: "rotation-request" });
      assert.equal(retry.created, false);
      assert.equal(retry.session?.sessionId, rotated);
      await client.setSessionData({ sessionId: ids[1] ?? "", key: "new", value: { kind: { case: "boolValue", value: true } } });
    });
    const mixed = await sealedValues();
    assert.ok(mixed.some((v) => v.startsWith("e1:k1:")) && mixed.some((v) => v.startsWith("e2:k2:")));

    // The command, as documented: npm run reencrypt (= tsx src/tools/reencrypt.ts) with the service's environment.
    const run = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/tools/reencrypt.ts"], {
        cwd: ROOT,
        env: { ...process.env, REDIS_URL: redis.url, ENCRYPTION_KEYS: `${K2},${K1}` },
        stdio: ["ignore", "pipe", "inherit"],
      });
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout }));
    });
    assert.equal(run.code, 0);
    const report = JSON.parse(run.stdout) as { rewritten: number; failed: number; primaryKeyId: string };
    assert.equal(report.primaryKeyId, "k2");
    assert.equal(report.failed, 0);
    // Every value under the old key, and the identifiers of every record and archive (retokened under the new key).
    assert.ok(report.rewritten >= mixed.filter((v) => sealedKeyId(v) === "k1").length);
    assert.ok((await sealedValues()).every((v) => v.startsWith("e2:k2:")));
    // Running it again finds nothing to do.
    assert.equal((await reencrypt({ redis: redis.raw, keyPrefix: "sd:", keyring: parseKeyring(`${K2},${K1}`) })).rewritten, 0);

    // With only the new key, everything still reads.
    await withApp({ ENCRYPTION_KEYS: K2 }, async (_app, client) => {
      for (const [i, id] of ids.entries()) {
        assert.deepEqual((await client.getSession({ sessionId: id })).session?.metadata, { i });
        assert.deepEqual((await client.getSessionData({ sessionId: id, key: "v" })).value?.kind, { case: "numberValue", value: i });
      }
      assert.deepEqual((await client.getSession({ sessionId: archived, includeEnded: true })).session?.metadata, { archived: true });
      // Identifiers moved to the new key's tokens: found by user and data source, named in the metrics.
      assert.equal((await client.getSession({ sessionId: archived, includeEnded: true })).session?.userId, "u");
      assert.deepEqual((await client.listSessions({ userId: "u" })).sessions.map((x) => x.sessionId).sort(), [...ids, rotated].sort());
      assert.deepEqual((await client.listSessions({ dataSource: "d" })).sessions.length, 4);
      assert.deepEqual((await client.getSessionMetrics({})).activeByDataSource, { d: 4n });
    });
  });

  test("plaintext slipped into Redis is refused with keys; ENCRYPTION_MIGRATE_PLAINTEXT reads it until npm run reencrypt seals it", async () => {
    await redis.raw.flushall();
    let id = "";
    // Written before keys were configured.
    await withApp({ ENCRYPTION_KEYS: "", ALLOW_PLAINTEXT: "true" }, async (_app, client) => {
      id = (await client.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { old: "plain" } })).session?.sessionId ?? "";
      await client.setSessionData({ sessionId: id, key: "k", value: { kind: { case: "stringValue", value: "plain-data" } } });
    });
    const keys = new RedisKeys("sd:", "default");
    const internal = (e: unknown): boolean => e instanceof ConnectError && e.code === Code.Internal;
    await withApp({ ENCRYPTION_KEYS: K1 }, async (_app, client) => {
      await assert.rejects(client.getSession({ sessionId: id }), internal, "plaintext metadata refused");
      // Data under a plain key name is not even looked at: keys are found by their keyed HMAC.
      await assert.rejects(
        client.getSessionData({ sessionId: id, key: "k" }),
        (e: unknown) => e instanceof ConnectError && (e.code === Code.Internal || e.code === Code.NotFound),
        "plaintext data refused",
      );
      // A sealed session with a plaintext value written over its metadata or data: refused too.
      const sealed = (await client.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { a: 1 } })).session?.sessionId ?? "";
      await client.setSessionData({ sessionId: sealed, key: "k", value: { kind: { case: "numberValue", value: 1 } } });
      await redis.raw.hset(keys.record(sealed), "m", '{"forged":true}');
      await redis.raw.hset(keys.data(sealed), dataToken("k"), '"forged"');
      await assert.rejects(client.getSession({ sessionId: sealed }), internal);
      await assert.rejects(client.getSessionData({ sessionId: sealed, key: "k" }), internal);
      await client.closeSession({ sessionId: sealed }).catch(() => undefined);
    });
    await withApp({ ENCRYPTION_KEYS: K1, ENCRYPTION_MIGRATE_PLAINTEXT: "true" }, async (_app, client) => {
      assert.deepEqual((await client.getSession({ sessionId: id })).session?.metadata, { old: "plain" });
    });
    const report = await reencrypt({ redis: redis.raw, keyPrefix: "sd:", keyring: parseKeyring(K1) });
    assert.ok(report.rewritten >= 2);
    await withApp({ ENCRYPTION_KEYS: K1 }, async (_app, client) => {
      assert.deepEqual((await client.getSession({ sessionId: id })).session?.metadata, { old: "plain" });
      assert.deepEqual((await client.getSessionData({ sessionId: id, key: "k" })).value?.kind, { case: "stringValue", value: "plain-data" });
    });
  });
});
