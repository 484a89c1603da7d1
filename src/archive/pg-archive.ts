/**
 * The archive database: ended sessions in PostgreSQL, through `pg`'s pool.
 *
 * Rows are keyed by (tenant, session_id) and written with
 * INSERT ... ON CONFLICT DO NOTHING, so delivering an ended session twice
 * (the sink is at-least-once) leaves one row. Listings page by keyset on
 * (end_time, session_id), newest first, over an index per filter (see the
 * migration), so a page costs O(page) whatever the table's size.
 *
 * The schema is owned by node-pg-migrate (migrate()): replicas starting
 * together wait on its advisory lock, so exactly one applies each migration.
 */
import { fileURLToPath } from "node:url";
import { runner } from "node-pg-migrate";
import pg from "pg";
import type { Logger } from "pino";
import { SessionError } from "../domain/errors.js";
import type { SessionRecord } from "../domain/model.js";
import type { EndedFilter, EndedPage, EndedPosition } from "../domain/ended-archive.js";

export interface PgArchiveOptions {
  /** postgres://user[:password]@host:port/db */
  readonly url: string;
  /** Replaces the URL's password (ARCHIVE_DATABASE_PASSWORD_FILE). */
  readonly password?: string;
  /** Most connections of this process. */
  readonly poolSize: number;
  /** Bound on connecting and on one statement. */
  readonly timeoutMs: number;
  readonly logger?: Logger;
}

/** An ended session to archive, with the event log entry that reported it. */
export interface ArchiveRow {
  readonly record: SessionRecord;
  readonly eventId: string;
}

const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations", import.meta.url));
const MIGRATIONS_TABLE = "sessiond_migrations";

/** SQLSTATEs that mean "the database cannot serve now", not "the statement is wrong". */
const UNAVAILABLE_STATES = new Set(["57P01", "57P02", "57P03", "57014", "53300", "55P03", "40001", "40P01"]);

const COLUMNS = "tenant, session_id, user_id, data_source, access_level, status, create_time, expire_time, last_access_time, end_time, metadata, version";

interface Row {
  tenant: string;
  session_id: string;
  user_id: string;
  data_source: string;
  access_level: SessionRecord["accessLevel"];
  status: SessionRecord["status"];
  create_time: Date;
  expire_time: Date;
  last_access_time: Date;
  end_time: Date;
  metadata: string;
  version: string;
}

export class PgArchive {
  private readonly pool: pg.Pool;
  private readonly logger: Logger | undefined;

  constructor(options: PgArchiveOptions) {
    this.logger = options.logger;
    this.pool = new pg.Pool({
      connectionString: withPassword(options.url, options.password),
      max: options.poolSize,
      connectionTimeoutMillis: options.timeoutMs,
      statement_timeout: options.timeoutMs,
      query_timeout: options.timeoutMs + 1000,
      idleTimeoutMillis: 30_000,
      application_name: "sessiond",
    });
    // An idle connection that breaks (server restart, pg_terminate_backend) is
    // dropped from the pool; without a listener the error would end the process.
    this.pool.on("error", (error: Error) => {
      this.logger?.warn({ err: describe(error) }, "archive database connection lost");
    });
  }

  /** Applies pending migrations (waiting for another replica that is applying them). */
  async migrate(): Promise<void> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw unavailable(error);
    });
    try {
      const log = (msg: string): void => this.logger?.debug({ migration: msg }, "archive database migration");
      await runner({
        dbClient: client,
        dir: MIGRATIONS_DIR,
        // tsc's source maps and declarations sit beside the compiled migrations.
        ignorePattern: String.raw`(^\..*)|(.*\.map$)|(.*\.d\.ts$)`,
        migrationsTable: MIGRATIONS_TABLE,
        direction: "up",
        checkOrder: true,
        singleTransaction: true,
        advisoryLockMode: "wait",
        logger: { debug: log, info: log, warn: log, error: log },
      });
    } finally {
      client.release();
    }
  }

  /** Writes the rows that are not there yet; returns how many were new. */
  async insert(rows: readonly ArchiveRow[]): Promise<number> {
    if (rows.length === 0) return 0;
    const cols: unknown[][] = Array.from({ length: 13 }, () => []);
    for (const { record: r, eventId } of rows) {
      const values = [
        r.tenant,
        r.sessionId,
        r.userId,
        r.dataSource,
        r.accessLevel,
        r.status,
        iso(r.createTime),
        iso(r.expireTime),
        iso(r.lastAccessTime),
        iso(r.endTime),
        r.metadata,
        String(r.version),
        eventId,
      ];
      values.forEach((v, i) => cols[i]?.push(v));
    }
    const result = await this.query(
      `INSERT INTO archived_sessions (${COLUMNS}, event_id)
       SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                            $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[],
                            $11::text[], $12::bigint[], $13::text[])
       ON CONFLICT (tenant, session_id) DO NOTHING`,
      cols,
    );
    return result.rowCount ?? 0;
  }

  /** The archived session, or undefined. */
  async find(tenant: string, sessionId: string): Promise<SessionRecord | undefined> {
    const result = await this.query<Row>(`SELECT ${COLUMNS} FROM archived_sessions WHERE tenant = $1 AND session_id = $2`, [tenant, sessionId]);
    const row = result.rows[0];
    return row === undefined ? undefined : toRecord(row);
  }

  /** Ended sessions of the tenant matching the filter, newest end first, after the position. */
  async list(tenant: string, filter: EndedFilter, limit: number, after?: EndedPosition): Promise<EndedPage> {
    const { text, params } = listQuery(tenant, filter, limit + 1, after);
    const result = await this.query<Row>(text, params);
    const sessions = result.rows.slice(0, limit).map(toRecord);
    const last = sessions[sessions.length - 1];
    if (result.rows.length > limit && last !== undefined) return { sessions, next: { endTime: last.endTime, sessionId: last.sessionId } };
    return { sessions };
  }

  /**
   * Deletes up to `limit` sessions that ended before the cutoff (in no
   * particular order: all of them go); returns how many. Rows another replica
   * is deleting are skipped, not waited for.
   */
  async deleteEndedBefore(cutoff: number, limit: number): Promise<number> {
    const result = await this.query(
      `DELETE FROM archived_sessions WHERE ctid = ANY (ARRAY (
         SELECT ctid FROM archived_sessions WHERE end_time < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`,
      [iso(cutoff), limit],
    );
    return result.rowCount ?? 0;
  }

  async ping(): Promise<void> {
    await this.query("SELECT 1", []);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** One statement; connection failures and timeouts become SessionError("unavailable"). */
  private async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, params);
    } catch (error) {
      if (isUnavailable(error)) throw unavailable(error);
      throw error;
    }
  }
}

/** Whether a pg error means the database cannot serve now (connection, timeout, shutdown, overload). */
export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  // Errors without an SQLSTATE come from the connection (refused, reset, timed out).
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return code.startsWith("08") || UNAVAILABLE_STATES.has(code);
}

function unavailable(error: unknown): SessionError {
  if (error instanceof SessionError) return error;
  return new SessionError("unavailable", `archive database not reachable (${describe(error)})`);
}

/** Class and SQLSTATE or errno of a pg failure: never the statement's values. */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return typeof error;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? `${error.name} ${code}` : error.name;
}

/**
 * The keyset query of one page (exported for the test that checks its plan):
 * equality on the filter's columns, then (end_time, session_id) below the
 * position, in index order, so PostgreSQL reads `limit` index entries.
 */
export function listQuery(tenant: string, filter: EndedFilter, limit: number, after?: EndedPosition): { text: string; params: unknown[] } {
  const params: unknown[] = [tenant];
  const where = ["tenant = $1"];
  const add = (sql: (n: string) => string, value: unknown): void => {
    params.push(value);
    where.push(sql(`$${params.length}`));
  };
  if (filter.userId !== undefined) add((n) => `user_id = ${n}`, filter.userId);
  if (filter.dataSource !== undefined) add((n) => `data_source = ${n}`, filter.dataSource);
  if (filter.endedAfter !== undefined) add((n) => `end_time >= ${n}`, iso(filter.endedAfter));
  if (filter.endedBefore !== undefined) add((n) => `end_time < ${n}`, iso(filter.endedBefore));
  if (after !== undefined) {
    params.push(iso(after.endTime), after.sessionId);
    where.push(`(end_time, session_id) < ($${params.length - 1}, $${params.length})`);
  }
  params.push(limit);
  const text = `SELECT ${COLUMNS} FROM archived_sessions WHERE ${where.join(" AND ")}
     ORDER BY end_time DESC, session_id DESC LIMIT $${params.length}`;
  return { text, params };
}

function withPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const parsed = new URL(url);
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function toRecord(row: Row): SessionRecord {
  return {
    tenant: row.tenant,
    sessionId: row.session_id,
    userId: row.user_id,
    dataSource: row.data_source,
    accessLevel: row.access_level,
    status: row.status,
    createTime: row.create_time.getTime(),
    expireTime: row.expire_time.getTime(),
    lastAccessTime: row.last_access_time.getTime(),
    endTime: row.end_time.getTime(),
    metadata: row.metadata,
    version: Number(row.version),
  };
}
