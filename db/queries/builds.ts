import { and, asc, count, desc, eq, getTableColumns, inArray, notInArray, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { buildPlatforms, builds, namespaces, repositories, type Build, type BuildPlatform, type NewBuild } from '../schema';
import { BUILD_STATUSES, TERMINAL_STATUSES, type BuildStatus } from '../../domain/builds';

export type BuildWithDetails = Build & { repository: string; platformStates: BuildPlatform[] };

/**
 * Inserts a build and its per-platform rows. With a clientToken already used, inserts nothing
 * and returns the existing build (`created: false`) so retries never make a second build.
 */
export async function insertBuild(db: Db, values: NewBuild): Promise<{ build: Build; created: boolean }> {
  return db.transaction(async (tx) => {
    const inserted = await tx
      .insert(builds)
      .values(values)
      .onConflictDoNothing({ target: [builds.clientTokenNamespaceId, builds.clientToken] })
      .returning();
    const build = inserted[0];
    if (!build) {
      const [existing] = await tx
        .select()
        .from(builds)
        .where(and(eq(builds.clientTokenNamespaceId, values.clientTokenNamespaceId!), eq(builds.clientToken, values.clientToken!)));
      return { build: existing!, created: false };
    }
    await tx.insert(buildPlatforms).values(build.platforms.map((platform) => ({ buildId: build.id, platform })));
    return { build, created: true };
  });
}

/** Inserts a build with its own id at most once (a retried insert returns the first row). */
export async function insertBuildOnce(db: Db, values: NewBuild & { id: string }): Promise<Build> {
  return db.transaction(async (tx) => {
    const [inserted] = await tx.insert(builds).values(values).onConflictDoNothing({ target: builds.id }).returning();
    if (!inserted) return (await tx.select().from(builds).where(eq(builds.id, values.id)))[0]!;
    await tx.insert(buildPlatforms).values(inserted.platforms.map((platform) => ({ buildId: inserted.id, platform })));
    return inserted;
  });
}

/** A build submitted earlier with this clientToken in this namespace (tokens are unique per namespace). */
export async function findBuildByClientToken(db: Db, namespace: string, clientToken: string): Promise<Build | undefined> {
  const [row] = await db
    .select({ build: builds })
    .from(builds)
    .innerJoin(namespaces, eq(builds.clientTokenNamespaceId, namespaces.id))
    .where(and(eq(namespaces.name, namespace), eq(builds.clientToken, clientToken)));
  return row?.build;
}

/**
 * The build, its repository path and its platform rows in ONE round trip (the platforms as a JSON
 * array, built from the table's own column list), as a query prepared once per database handle.
 * GET /builds/:id and every build step read it, so it is the hottest query there is.
 */
export async function getBuild(db: Db, id: string): Promise<BuildWithDetails | undefined> {
  let query = preparedGetBuild.get(db);
  if (!query) preparedGetBuild.set(db, (query = prepareGetBuild(db)));
  const [row] = await query.execute({ id });
  if (!row) return undefined;
  const platformStates = (row.platforms as Record<string, unknown>[]).map(platformFromJson);
  return { ...row.build, repository: `${row.namespace}/${row.repository}`, platformStates };
}

function prepareGetBuild(db: Db) {
  return db
    .select({ build: builds, namespace: namespaces.name, repository: repositories.name, platforms: platformsJson })
    .from(builds)
    .innerJoin(repositories, eq(builds.repositoryId, repositories.id))
    .innerJoin(namespaces, eq(repositories.namespaceId, namespaces.id))
    .where(eq(builds.id, sql.placeholder('id')))
    .prepare('kiln_get_build');
}
/** Keyed by handle: a transaction passed as `db` gets its own, run inside it. */
const preparedGetBuild = new WeakMap<Db, ReturnType<typeof prepareGetBuild>>();

const platformColumns = Object.entries(getTableColumns(buildPlatforms));
/** `[{platform, status, ...}]` of one build, ordered by platform, keys as the schema names them. */
const platformsJson = sql<unknown[]>`coalesce((select json_agg(json_build_object(${sql.raw(
  platformColumns.map(([key, col]) => `'${key}', bp.${JSON.stringify(col.name)}`).join(', '),
)}) order by bp.platform) from build_platforms bp where bp.build_id = ${builds.id}), '[]'::json)`;

/** JSON has no dates: timestamp columns come back as ISO strings. */
function platformFromJson(raw: Record<string, unknown>): BuildPlatform {
  const out: Record<string, unknown> = { ...raw };
  for (const [key, col] of platformColumns) {
    if (col.dataType === 'date' && typeof out[key] === 'string') out[key] = new Date(out[key] as string);
  }
  return out as BuildPlatform;
}

export interface BuildCursor {
  createdAt: Date;
  id: string;
}

/** `<createdAt ms>_<id>` (api/schemas.ts BUILD_CURSOR_RE says which strings are cursors). */
export function encodeBuildCursor(c: BuildCursor): string {
  return `${c.createdAt.getTime()}_${c.id}`;
}

export function decodeBuildCursor(raw: string): BuildCursor | undefined {
  const m = /^([0-9]{1,14})_([0-9a-f-]{36})$/.exec(raw);
  if (!m) return undefined;
  return { createdAt: new Date(Number(m[1])), id: m[2]! };
}

/** Newest first, keyset-paged on (createdAt, id). */
export async function listBuilds(
  db: Db,
  opts: { repositoryId?: string; namespace?: string; status?: BuildStatus; trigger?: Build['trigger']; cursor?: BuildCursor; limit: number },
): Promise<{ items: BuildWithDetails[]; nextCursor: string | null }> {
  const conds = [];
  if (opts.repositoryId) conds.push(eq(builds.repositoryId, opts.repositoryId));
  if (opts.status) conds.push(eq(builds.status, opts.status));
  if (opts.trigger) conds.push(eq(builds.trigger, opts.trigger));
  if (opts.namespace) conds.push(eq(namespaces.name, opts.namespace));
  if (opts.cursor) {
    const { createdAt, id } = opts.cursor;
    // The cursor's timestamp is cut to milliseconds but created_at holds microseconds, so compare
    // against the cursor row's stored value; the encoded time only serves if that row is gone.
    const at = sql`coalesce((select b.created_at from builds b where b.id = ${id}::uuid), ${createdAt.toISOString()}::timestamptz)`;
    conds.push(sql`(${builds.createdAt}, ${builds.id}) < (${at}, ${id}::uuid)`);
  }
  const rows = await db
    .select({ build: builds, namespace: namespaces.name, repository: repositories.name })
    .from(builds)
    .innerJoin(repositories, eq(builds.repositoryId, repositories.id))
    .innerJoin(namespaces, eq(repositories.namespaceId, namespaces.id))
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(desc(builds.createdAt), desc(builds.id))
    .limit(opts.limit + 1);
  const page = rows.slice(0, opts.limit);
  const ids = page.map((r) => r.build.id);
  const states = ids.length
    ? await db.select().from(buildPlatforms).where(inArray(buildPlatforms.buildId, ids)).orderBy(asc(buildPlatforms.platform))
    : [];
  const items = page.map((r) => ({
    ...r.build,
    repository: `${r.namespace}/${r.repository}`,
    platformStates: states.filter((s) => s.buildId === r.build.id),
  }));
  const last = page[page.length - 1];
  const nextCursor = rows.length > opts.limit && last ? encodeBuildCursor(last.build) : null;
  return { items, nextCursor };
}

export async function updateBuild(db: Db, id: string, values: Partial<NewBuild>): Promise<Build | undefined> {
  const [row] = await db.update(builds).set(values).where(eq(builds.id, id)).returning();
  return row;
}

/**
 * Moves a build to a terminal status once: a build already finished keeps its first outcome,
 * so a late retry of a recording activity cannot overwrite it.
 */
export async function finishBuild(
  db: Db,
  id: string,
  values: Partial<NewBuild> & { status: (typeof TERMINAL_STATUSES)[number] },
): Promise<Build | undefined> {
  const [row] = await db
    .update(builds)
    .set({ finishedAt: new Date(), ...values })
    .where(and(eq(builds.id, id), notInArray(builds.status, [...TERMINAL_STATUSES])))
    .returning();
  return row;
}

export async function updateBuildPlatform(
  db: Db,
  buildId: string,
  platform: string,
  values: Partial<typeof buildPlatforms.$inferInsert>,
): Promise<void> {
  await db
    .update(buildPlatforms)
    .set(values)
    .where(and(eq(buildPlatforms.buildId, buildId), eq(buildPlatforms.platform, platform)));
}


export async function getBuildStatus(db: Db, id: string): Promise<BuildStatus | undefined> {
  const [row] = await db.select({ status: builds.status }).from(builds).where(eq(builds.id, id));
  return row?.status;
}

export async function countBuildsByStatus(db: Db): Promise<Record<BuildStatus, number>> {
  const rows = await db.select({ status: builds.status, n: count() }).from(builds).groupBy(builds.status);
  const out = Object.fromEntries(BUILD_STATUSES.map((s) => [s, 0])) as Record<BuildStatus, number>;
  for (const r of rows) out[r.status] = Number(r.n);
  return out;
}

/** Builds of a repository that have not reached a terminal status. */
export async function countActiveBuilds(db: Db, repositoryId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(builds)
    .where(and(eq(builds.repositoryId, repositoryId), notInArray(builds.status, [...TERMINAL_STATUSES])));
  return Number(row?.n ?? 0);
}

/**
 * A queued build's place among its namespace's builds waiting for a slot (1 = next), in the
 * scheduler's order: submission time to the millisecond, then id (domain/build-slots.ts). Not the
 * time its slot request ran: requests of builds submitted one after the other may run in either
 * order. Null when it is not waiting.
 */
export async function getQueuePosition(db: Db, build: Pick<Build, 'id' | 'status' | 'slotRequestedAt' | 'repositoryId' | 'createdAt'>): Promise<number | null> {
  if (build.status !== 'queued' || !build.slotRequestedAt) return null;
  const at = build.createdAt.toISOString();
  const [row] = await db
    .select({ n: count() })
    .from(builds)
    .innerJoin(repositories, eq(builds.repositoryId, repositories.id))
    .where(
      and(
        eq(builds.status, 'queued'),
        sql`${builds.slotRequestedAt} is not null`,
        sql`${repositories.namespaceId} = (select r.namespace_id from repositories r where r.id = ${build.repositoryId}::uuid)`,
        sql`(date_trunc('milliseconds', ${builds.createdAt}), ${builds.id}) <= (${at}::timestamptz, ${build.id}::uuid)`,
      ),
    );
  return Number(row?.n ?? 0) || null;
}
