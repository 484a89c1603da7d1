/**
 * The callers of the ownership tests (issue 17), shared by every file that
 * checks who reaches which session: the owner, another user of the same
 * tenant, a user of another tenant, a service principal, and a delegating
 * service principal acting for the owner or for the other user; with the
 * audit identity each must leave, an in-memory audit capture, and the auth
 * settings that make those credentials valid.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { DestinationStream } from "pino";
import { AUDIENCE, hs256, HS_SECRET, ISSUER, writeApiKeysFile, type TestKey } from "./auth.js";
import type { Credentials } from "./wire-clients.js";

export const ACME = "acme";
export const GLOBEX = "globex";
export const SCOPES = "read write watch";

export const KEYS = {
  backend: { id: "backend", key: `k-${randomUUID()}`, tenant: ACME, scopes: ["read", "write", "watch", "access"] },
  bff: { id: "bff", key: `k-${randomUUID()}`, tenant: ACME, scopes: ["read", "write", "watch", "act_as"] },
  scraper: { id: "scraper", key: `k-${randomUUID()}`, tenant: ACME, scopes: ["metrics"] },
} satisfies Record<string, TestKey>;

/** A key bound to a user in its API_KEYS_FILE entry. */
export const KIOSK = { id: "kiosk", key: `k-${randomUUID()}`, tenant: ACME, scopes: ["read", "write"], user: "carol" };

export type Rec = Readonly<Record<string, unknown>>;

/** Who calls, and what the audit record must say about it. */
export interface Caller {
  readonly name: string;
  readonly credentials: Credentials;
  readonly audit: Rec;
  /** The user and tenant whose sessions it reaches; undefined user: every user of the tenant. */
  readonly tenant: string;
  readonly user: string | undefined;
}

export interface Callers {
  readonly owner: Caller;
  readonly otherUser: Caller;
  readonly otherTenant: Caller;
  readonly service: Caller;
  readonly delegatingForOwner: Caller;
  readonly delegatingForOther: Caller;
}

export async function makeCallers(): Promise<Callers> {
  const jwt = async (sub: string, tenant: string): Promise<string> => `Bearer ${await hs256({ sub, tenant, scope: SCOPES })}`;
  return {
    owner: { name: "owner", credentials: { authorization: await jwt("alice", ACME) }, audit: { principal: "jwt:alice", tenant: ACME, user: "alice" }, tenant: ACME, user: "alice" },
    otherUser: { name: "another user of the tenant", credentials: { authorization: await jwt("bob", ACME) }, audit: { principal: "jwt:bob", tenant: ACME, user: "bob" }, tenant: ACME, user: "bob" },
    otherTenant: {
      name: "a user of another tenant (same user id)",
      credentials: { authorization: await jwt("alice", GLOBEX) },
      audit: { principal: "jwt:alice", tenant: GLOBEX, user: "alice" },
      tenant: GLOBEX,
      user: "alice",
    },
    service: { name: "service principal", credentials: { authorization: `Bearer ${KEYS.backend.key}` }, audit: { principal: "key:backend", tenant: ACME }, tenant: ACME, user: undefined },
    delegatingForOwner: {
      name: "delegating service acting for the owner",
      credentials: { authorization: `Bearer ${KEYS.bff.key}`, actAs: "alice" },
      audit: { principal: "key:bff", tenant: ACME, user: "alice", delegated: true },
      tenant: ACME,
      user: "alice",
    },
    delegatingForOther: {
      name: "delegating service acting for another user",
      credentials: { authorization: `Bearer ${KEYS.bff.key}`, actAs: "bob" },
      audit: { principal: "key:bff", tenant: ACME, user: "bob", delegated: true },
      tenant: ACME,
      user: "bob",
    },
  };
}

/** Captures audit records in memory (the app writes them synchronously, before the reply). */
export function auditCapture(): { destination: DestinationStream; records(): Rec[]; last(): Rec } {
  const lines: string[] = [];
  const records = (): Rec[] => lines.map((l) => JSON.parse(l) as Rec);
  return {
    destination: { write: (line: string) => void lines.push(line) },
    records,
    last: () => {
      const all = records();
      const record = all[all.length - 1];
      assert.ok(record !== undefined, "an audit record was written");
      return record;
    },
  };
}

/** Asserts that `record` holds every field of `expected`, and no user fields that `expected` lacks. */
export function assertAudit(record: Rec, expected: Rec, why: string): void {
  for (const [key, value] of Object.entries(expected)) assert.deepEqual(record[key], value, `${why}: audit ${key}`);
  if (!("user" in expected)) assert.equal(record["user"], undefined, `${why}: audit names no user`);
  if (!("delegated" in expected)) assert.equal(record["delegated"], undefined, `${why}: audit not delegated`);
}

export function authEnv(dir: string): Record<string, string> {
  return {
    API_KEYS_FILE: writeApiKeysFile(dir, Object.values(KEYS)),
    JWT_HS256_SECRET: HS_SECRET,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    JWT_USER_CLAIM: "sub",
    WATCH_HEARTBEAT: "200ms",
    AUDIT_LOG: "stdout",
  };
}
