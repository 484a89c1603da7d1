/**
 * The bounded caches behind a create's names (src/store/scoped-cache.ts and
 * its users): they stay bounded, and never hand one tenant's or user's value
 * to another, whatever characters the names hold.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { KeyedFieldCipher, DecryptError } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import type { SessionRecord } from "../src/domain/model.js";
import { UserPlacement } from "../src/store/partition-secret.js";
import { SealedNames, Unreadable } from "../src/store/sealed-names.js";
import { ScopedCache } from "../src/store/scoped-cache.js";

const cipher = new KeyedFieldCipher(parseKeyring(`k1:${Buffer.alloc(32, 7).toString("base64")}`));

describe("ScopedCache", () => {
  it("never holds more than its limit, and a full cache starts over rather than serve a stale or foreign entry", () => {
    const cache = new ScopedCache<string>(3);
    for (let i = 0; i < 10; i++) {
      cache.set(`t${i % 2}`, `n${i}`, `v${i}`);
      assert.ok(cache.size <= 3, `size ${cache.size} after ${i + 1} sets`);
      assert.equal(cache.get(`t${i % 2}`, `n${i}`), `v${i}`);
    }
    // Setting a key it holds again does not count twice.
    const again = new ScopedCache<string>(2);
    again.set("t", "a", "1");
    again.set("t", "a", "2");
    again.set("t", "b", "3");
    assert.equal(again.size, 2);
    assert.deepEqual([again.get("t", "a"), again.get("t", "b")], ["2", "3"]);
  });

  it("keeps scope and key apart: no (tenant, name) pair reaches another's value through a separator", () => {
    const cache = new ScopedCache<string>(10);
    cache.set("a\nb", "c", "first");
    cache.set("a", "b\nc", "second");
    assert.equal(cache.get("a\nb", "c"), "first");
    assert.equal(cache.get("a", "b\nc"), "second");
    assert.equal(cache.get("a", "c"), undefined);
  });
});

/** A live session record of user "u" and data source "d" in tenant "t", sealed as the store writes it. */
function sealedRecord(names: SealedNames, sessionId: string, metadata: string, metadataTag: string): SessionRecord {
  return {
    tenant: "t",
    sessionId,
    userId: names.token("t", "user", "u"),
    dataSource: names.token("t", "data_source", "d"),
    accessLevel: "read",
    status: "active",
    createTime: 1,
    expireTime: 2,
    lastAccessTime: 1,
    endTime: 0,
    metadata,
    version: 1,
    sealed: { user: names.sealName("t", "user", "u"), dataSource: names.sealName("t", "data_source", "d"), metadataTag },
  };
}

describe("SealedNames caches", () => {
  it("gives each (tenant, name) its own token even when joining them with a newline would not tell them apart", () => {
    const names = new SealedNames(cipher);
    const first = names.token("a\nb", "user", "c");
    const second = names.token("a", "user", "b\nc");
    assert.notEqual(first, second);
    assert.equal(second, new SealedNames(cipher).token("a", "user", "b\nc"));
    assert.notEqual(names.token("a", "user", "x"), names.token("a", "data_source", "x"));
  });

  it("serves an opened name only for the tenant, kind and token it was checked for", () => {
    const names = new SealedNames(cipher);
    const sealed = names.sealName("t1", "user", "alice");
    assert.equal(names.openName("t1", "user", sealed, names.token("t1", "user", "alice")), "alice");
    assert.throws(() => names.openName("t2", "user", sealed, names.token("t2", "user", "alice")), DecryptError);
    assert.throws(() => names.openName("t1", "data_source", sealed, names.token("t1", "data_source", "alice")), DecryptError);
    assert.throws(() => names.openName("t1", "user", sealed, names.token("t1", "user", "bob")), Unreadable);
  });

  it("accepts a verified metadata tag only with the metadata and session it was made for", () => {
    const names = new SealedNames(cipher);
    const record = (sessionId: string, metadata: string, metadataTag: string): SessionRecord => sealedRecord(names, sessionId, metadata, metadataTag);
    const id = "00000000-0000-4000-8000-000000000001";
    const other = "00000000-0000-4000-8000-000000000002";
    const tag = names.metadataTag("t", id, "e1:k1:first");
    assert.equal(names.check(record(id, "e1:k1:first", tag)).metadata, "e1:k1:first");
    assert.throws(() => names.check(record(id, "e1:k1:second", tag)), Unreadable);
    assert.throws(() => names.check(record(other, "e1:k1:first", tag)), Unreadable);
  });

  it("bounds the verified-tag cache by metadata size as well as by entries", () => {
    const names = new SealedNames(cipher);
    const big = `e1:k1:${"x".repeat(1024 * 1024)}`;
    for (let i = 0; i < 40; i++) {
      const id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
      const tag = names.metadataTag("t", id, big);
      const record = sealedRecord(names, id, big, tag);
      assert.equal(names.check(record).metadata, big);
      assert.ok(names.verifiedTagLoad.chars <= 8 * 1024 * 1024, `${names.verifiedTagLoad.chars} characters held after ${i + 1} checks`);
    }
    assert.ok(names.verifiedTagLoad.entries >= 1);
  });

  it("takes a write's reply as sent only when it carries exactly the forms sent, for the same session", () => {
    const names = new SealedNames(cipher);
    const id = "00000000-0000-4000-8000-000000000003";
    const user = names.sent("t", "user", "u");
    const dataSource = names.sent("t", "data_source", "d");
    const tag = names.metadataTag("t", id, "e1:k1:meta");
    const written = { tenant: "t", sessionId: id, user, dataSource, metadata: { text: "e1:k1:meta", tag } };
    const reply: SessionRecord = {
      ...sealedRecord(names, id, "e1:k1:meta", tag),
      userId: user.token,
      dataSource: dataSource.token,
      sealed: { user: user.sealed, dataSource: dataSource.sealed, metadataTag: tag },
    };
    assert.deepEqual([names.check(reply, true, written).userId, names.check(reply, true, written).dataSource], ["u", "d"]);
    // Other metadata under the sent tag, or another user's token beside the sent sealed name: checked, and refused.
    assert.throws(() => names.check({ ...reply, metadata: "e1:k1:other" }, true, written), Unreadable);
    assert.throws(() => names.check({ ...reply, userId: names.token("t", "user", "someone-else") }, true, written), Unreadable);
    // The same forms in another tenant's record are not taken as sent (the sealed name is bound to its tenant).
    assert.throws(() => names.check({ ...reply, tenant: "t2" }, true, written), DecryptError);
  });
});

describe("UserPlacement", () => {
  it("remembers placements per tenant and user, each the keyed HMAC of that pair", () => {
    const secret = Buffer.alloc(32, 9);
    const placement = new UserPlacement(secret);
    const expected = (tenant: string, user: string): string => createHmac("sha256", secret).update(`${tenant}\n${user}`).digest("base64url").slice(0, 22);
    for (let round = 0; round < 2; round++) {
      assert.equal(placement.of("a", "u"), expected("a", "u"));
      assert.equal(placement.of("b", "u"), expected("b", "u"));
      assert.equal(placement.of("a", "v"), expected("a", "v"));
    }
    assert.notEqual(placement.of("a", "u"), placement.of("b", "u"));
  });
});
