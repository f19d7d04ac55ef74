import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { BuildLogSignals } from './log-signals';
import * as schema from './schema';

/** The one database type the queries take: PGlite and Postgres share it. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface DbHandle {
  db: Db;
  kind: 'pglite' | 'postgres';
  /** Wakes build log followers (LISTEN on Postgres, PGlite's notifications in process). */
  logSignals: BuildLogSignals;
  close(): Promise<void>;
}

const migrationsFolder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

/**
 * Opens Postgres when a URL is given, else embedded PGlite in `dataDir` (or in memory when
 * dataDir is 'memory://'), and applies the committed migrations.
 */
export async function openDatabase(opts: { url?: string; dataDir?: string }): Promise<DbHandle> {
  if (opts.url) {
    const client = postgres(opts.url, { max: 10, onnotice: () => {} });
    const db = drizzlePostgres(client, { schema });
    await migratePostgres(db, { migrationsFolder });
    // postgres.js keeps one extra connection for LISTEN and re-listens after a reconnect.
    const logSignals = new BuildLogSignals((channel, fn) => client.listen(channel, fn));
    return { db: db as unknown as Db, kind: 'postgres', logSignals, close: () => client.end({ timeout: 5 }) };
  }
  let location: string | undefined;
  if (opts.dataDir && opts.dataDir !== 'memory://') {
    location = path.join(opts.dataDir, 'pglite');
    mkdirSync(location, { recursive: true });
  }
  const client = new PGlite(location);
  const db = drizzlePglite(client, { schema });
  await migratePglite(db, { migrationsFolder });
  const logSignals = new BuildLogSignals((channel, fn) => client.listen(channel, fn));
  return { db: db as unknown as Db, kind: 'pglite', logSignals, close: () => client.close() };
}
