/**
 * The archive table of ended sessions and the indexes that keep every
 * ListEndedSessions page O(page): one per filter (user, data source, both,
 * none), each ending in (end_time, session_id), the keyset the pages follow.
 * The retention delete finds old rows across tenants with a BRIN index on
 * end_time (rows arrive roughly in end_time order): a few pages instead of a
 * fifth b-tree, and one the planner cannot mistake for an ordered path of a
 * listing.
 *
 * Times are timestamptz holding the store's millisecond times exactly;
 * metadata is the stored text (sealed "e1:..." when encryption keys are
 * configured, as in Redis), opened only by the session layer.
 */
import type { MigrationBuilder } from "node-pg-migrate";

export function up(pgm: MigrationBuilder): void {
  pgm.sql(`
    CREATE TABLE archived_sessions (
      tenant           text        NOT NULL,
      session_id       uuid        NOT NULL,
      user_id          text        NOT NULL,
      data_source      text        NOT NULL,
      access_level     text        NOT NULL CHECK (access_level IN ('read', 'write', 'admin')),
      status           text        NOT NULL CHECK (status IN ('closed', 'expired')),
      create_time      timestamptz NOT NULL,
      expire_time      timestamptz NOT NULL,
      last_access_time timestamptz NOT NULL,
      end_time         timestamptz NOT NULL,
      metadata         text        NOT NULL,
      version          bigint      NOT NULL,
      event_id         text        NOT NULL,
      archived_at      timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tenant, session_id)
    );
    CREATE INDEX archived_sessions_by_user ON archived_sessions (tenant, user_id, end_time, session_id);
    CREATE INDEX archived_sessions_by_source ON archived_sessions (tenant, data_source, end_time, session_id);
    CREATE INDEX archived_sessions_by_user_source ON archived_sessions (tenant, user_id, data_source, end_time, session_id);
    CREATE INDEX archived_sessions_by_tenant ON archived_sessions (tenant, end_time, session_id);
    CREATE INDEX archived_sessions_by_end ON archived_sessions USING brin (end_time);
  `);
}

export function down(pgm: MigrationBuilder): void {
  pgm.sql("DROP TABLE archived_sessions");
}
