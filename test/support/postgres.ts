/**
 * A private PostgreSQL database for one test file: created on the machine's
 * PostgreSQL (TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres,
 * which .ci/run makes sure is running) under a random name, and dropped after.
 * An unreachable PostgreSQL fails the tests: they are never skipped.
 */
import { randomBytes } from "node:crypto";
import { after, before } from "node:test";
import pg from "pg";

export const ADMIN_URL = process.env["TEST_POSTGRES_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface PostgresFixture {
  /** URL of the private database. */
  readonly url: string;
  readonly name: string;
  /** Runs one statement on the private database (a pooled connection of the test's own). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  /** Runs one statement on the admin database (pg_terminate_backend, ALTER DATABASE). */
  admin(text: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** A client of its own on the private database, for holding a transaction (locks). */
  connect(): Promise<pg.PoolClient>;
  /** Terminates every connection sessiond (application_name "sessiond") holds to the private database; returns how many. */
  terminateSessiond(): Promise<number>;
}

export function usePostgresDatabase(): PostgresFixture {
  const name = `sessiond_test_${randomBytes(6).toString("hex")}`;
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  let adminPool: pg.Pool | undefined;
  let pool: pg.Pool | undefined;
  const need = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("usePostgresDatabase: the database is created in before(); use it inside tests");
    return value;
  };
  before(async () => {
    adminPool = new pg.Pool({ connectionString: ADMIN_URL, max: 2 });
    adminPool.on("error", () => {});
    await adminPool.query(`CREATE DATABASE ${name}`);
    pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
    pool.on("error", () => {});
  });
  after(async () => {
    await pool?.end();
    await adminPool?.query(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`).catch(() => {});
    await adminPool?.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await adminPool?.end();
  });
  return {
    url: url.toString(),
    name,
    query: (text, params) => need(pool).query(text, params),
    admin: (text, params) => need(adminPool).query(text, params),
    connect: () => need(pool).connect(),
    async terminateSessiond() {
      const result = await need(adminPool).query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'sessiond'",
        [name],
      );
      return result.rowCount ?? 0;
    },
  };
}
