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
    const db = drizzlePostgres(preparingStatements(client), { schema });
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

/**
 * drizzle runs every query it did not `.prepare()` as an unnamed statement, and postgres.js then
 * describes a parameterized one first: two round trips and a parse and plan per query. This client
 * asks postgres.js for its named, per-connection statement cache instead (one round trip, planned
 * once per connection), in transactions too. Every query the app builds has a fixed text for a given
 * parameter count (values are always parameters), so the cache stays bounded; postgres.js recycles
 * connections, and re-prepares a statement that a migration invalidated.
 */
export function preparingStatements<T extends postgres.Sql>(sql: T): T {
  return new Proxy(sql, {
    get(target, key, receiver) {
      if (key === 'unsafe') {
        return (query: string, args?: postgres.ParameterOrJSON<never>[], options?: postgres.UnsafeQueryOptions) =>
          target.unsafe(query, args, { ...options, prepare: true });
      }
      if (key === 'begin' || key === 'savepoint') {
        const open = Reflect.get(target, key, receiver) as (...a: unknown[]) => unknown;
        return (...a: unknown[]) => {
          const fn = a.pop() as (tx: postgres.Sql) => unknown;
          return open.call(target, ...a, (tx: postgres.Sql) => fn(preparingStatements(tx)));
        };
      }
      return Reflect.get(target, key, receiver);
    },
  });
}

const preparedQueries = new WeakMap<Db, Map<unknown, unknown>>();

/**
 * A query of the ingest path, built by `make` once per database (drizzle's prepared statement: its
 * SQL is not rebuilt per call) and reused.
 */
export function preparedFor<T>(db: Db, make: (db: Db) => T): T {
  let byMaker = preparedQueries.get(db);
  if (!byMaker) preparedQueries.set(db, (byMaker = new Map()));
  let q = byMaker.get(make) as T | undefined;
  if (q === undefined) byMaker.set(make, (q = make(db)));
  return q;
}
