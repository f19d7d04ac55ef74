// A build rule's tag template: the zod schema is the one source. The API validates and documents
// it as is (api/rule-schemas.ts), the rule engine (rules.ts) and the stored rule (db/schema.ts)
// take its inferred type.
import { z } from '@hono/zod-openapi';
import { BUILD_TIME_FORMATS, isValidTimeZone } from './time-zones';

/** Offsets (`UTC+8`, `UTC-5:30`, `+08:00`, `GMT+1`) up to ±14:00. */
const UTC_OFFSET_RE = /^(?:UTC|GMT)?[+-](?:(?:0?[0-9]|1[0-3])(?::?[0-5][0-9])?|14(?::?00)?)$/;
/** The IANA names this runtime knows, plus UTC/GMT/Z: a closed list, so the document states it. */
const ZONE_NAMES = [...new Set(['UTC', 'GMT', 'Z', ...Intl.supportedValuesOf('timeZone')])].filter(isValidTimeZone) as [string, ...string[]];

export const TimeZone = z
  .union([z.enum(ZONE_NAMES), z.string().regex(UTC_OFFSET_RE)])
  .openapi({ description: 'Time zone of buildTime (default UTC+8): an offset such as UTC+8, UTC-5:30 or +08:00, or an IANA name', example: 'UTC+8' });

export const TagTemplateSchema = z
  .object({
    template: z.string().min(1).max(128).openapi({ example: '${imageTag}' }),
    buildTime: z.enum(BUILD_TIME_FORMATS).optional().openapi({ description: 'Append the build time' }),
    timeZone: TimeZone.optional(),
    commitIdLength: z.number().int().min(1).max(40).optional().openapi({ description: 'Append the first N characters of the commit id' }),
    /** Append the commit id even without `commitIdLength` (then 6 characters); `false` turns it off. */
    commitId: z.boolean().optional().openapi({ description: 'Append the commit id (6 characters unless commitIdLength)' }),
  })
  .strict()
  .openapi('TagTemplate');

export type TagTemplate = z.infer<typeof TagTemplateSchema>;
