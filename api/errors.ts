import { z } from '@hono/zod-openapi';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

export const ERROR_STATUS = {
  bad_request: 400,
  invalid_json: 400,
  validation_failed: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  range_not_satisfiable: 416,
  unprocessable: 422,
  too_many_requests: 429,
  internal: 500,
  service_unavailable: 503,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_STATUS;
export const ERROR_CODES = Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]];

export class ApiError extends Error {
  override readonly name = 'ApiError';

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: unknown = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get status(): ContentfulStatusCode {
    return ERROR_STATUS[this.code];
  }

  /** The response body; `requestId` is the request's X-Request-Id (set for every API response). */
  toBody(requestId?: string): ErrorBody {
    return {
      error: { code: this.code, message: this.message, details: this.details ?? null, ...(requestId ? { requestId } : {}) },
    };
  }
}

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.enum(ERROR_CODES),
      message: z.string(),
      details: z.unknown().nullable(),
      requestId: z
        .string()
        .optional()
        .openapi({ description: "The request's id, as in the X-Request-Id response header and the API's log lines" }),
    }),
  })
  .openapi('Error');

export type ErrorBody = z.infer<typeof ErrorSchema>;

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: ErrorSchema } },
});

/** The error responses routes declare, so the document lists them. */
export const errorResponses = {
  400: errorResponse('Invalid request (validation_failed, invalid_json, bad_request)'),
  401: errorResponse('Missing or invalid bearer token'),
  403: errorResponse('The token may not act on this namespace'),
  404: errorResponse('Not found'),
  409: errorResponse('Conflict with the current state'),
  413: errorResponse('Body larger than the configured limit'),
  415: errorResponse('Unsupported media type'),
  416: errorResponse('The byte range starts past the end of the log'),
  422: errorResponse(
    "The request matches this document but cannot be carried out (unprocessable): e.g. a match pattern that does not compile, a tag template that can never give a valid tag, or a namespace quota (maxTimeoutMinutes, maxRepositories, maxRules; `details` names the quota and its limit)",
  ),
  429: {
    ...errorResponse("Too many requests (too_many_requests): too many live followers of a build, or more build submissions than the namespace's rate (KILN_SUBMISSIONS_PER_MINUTE, bursts of KILN_SUBMISSION_BURST); retry after the Retry-After header's seconds"),
    headers: { 'Retry-After': { description: 'Seconds until a retry can succeed', schema: { type: 'integer', minimum: 1 } } },
  },
  503: errorResponse('A dependency is unavailable'),
} as const;

export function pickErrors<K extends keyof typeof errorResponses>(...codes: K[]): Pick<typeof errorResponses, K> {
  const out = {} as Pick<typeof errorResponses, K>;
  for (const c of codes) out[c] = errorResponses[c];
  return out;
}
