// Every table's row count and an order-independent hash of its rows, to prove a request changed
// nothing. Tables come from information_schema, so a table added later is covered without edits.
import { sql } from 'drizzle-orm';
import type { Db } from '../../db/client';

export type DbSnapshot = Record<string, { rows: number; hash: string }>;

/** Columns that record a use (a token's last use), which any authenticated call may move: not state. */
const USE_RECORD_COLUMNS = ['last_used_at'];

/** PGlite answers `{ rows }`, postgres-js an array. */
const rowsOf = (result: unknown) => (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Record<string, unknown>[];

export async function snapshotDatabase(db: Db): Promise<DbSnapshot> {
  const tables = rowsOf(
    await db.execute(sql`
      select table_name from information_schema.tables
      where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`),
  ).map((r) => String(r.table_name));
  if (tables.length === 0) throw new Error('no tables in schema public: the snapshot would prove nothing');
  // Each row as its text form, sorted, hashed: insert order and physical order do not matter.
  const perTable = tables.map((t) => {
    const ident = `"${t.replace(/"/g, '""')}"`;
    const literal = `'${t.replace(/'/g, "''")}'`;
    const row = `(to_jsonb(x) - array[${USE_RECORD_COLUMNS.map((c) => `'${c}'`).join(', ')}]::text[])::text`;
    return `select ${literal} as t, count(*)::int as n, coalesce(md5(string_agg(${row}, E'\\n' order by ${row})), '') as h from ${ident} x`;
  });
  const rows = rowsOf(await db.execute(sql.raw(perTable.join(' union all '))));
  return Object.fromEntries(rows.map((r) => [String(r.t), { rows: Number(r.n), hash: String(r.h) }]));
}

/** The tables whose rows differ, readable in a failure: `builds: 3 → 4 rows`, `rules: rows changed`. */
export function changedTables(before: DbSnapshot, after: DbSnapshot): string[] {
  return [...new Set([...Object.keys(before), ...Object.keys(after)])].sort().flatMap((t) => {
    const [b, a] = [before[t], after[t]];
    if (!b || !a) return [`${t}: table ${b ? 'dropped' : 'created'}`];
    if (b.rows !== a.rows) return [`${t}: ${b.rows} → ${a.rows} rows`];
    return b.hash === a.hash ? [] : [`${t}: rows changed`];
  });
}
