// Outbound notifications: the events a subscription can ask for and the headers a delivery carries.
// No I/O here; delivering is activities/notify.ts, the subscriptions API is api/routes/subscriptions.ts.

export const NOTIFICATION_EVENTS = ['build.started', 'build.succeeded', 'build.failed', 'build.canceled', 'image.pushed'] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

export const NOTIFICATION_DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;
export type DeliveryStatus = (typeof NOTIFICATION_DELIVERY_STATUSES)[number];

/** `sha256=<hex HMAC-SHA256 of the body>` with the subscription's secret. */
export const SIGNATURE_HEADER = 'X-Kiln-Signature-256';
export const DELIVERY_HEADER = 'X-Kiln-Delivery';
export const EVENT_HEADER = 'X-Kiln-Event';

/** The event a build's status announces (timed out counts as failed); null for non-terminal statuses but running. */
export function buildEventFor(status: string): NotificationEvent | null {
  switch (status) {
    case 'running':
      return 'build.started';
    case 'succeeded':
      return 'build.succeeded';
    case 'failed':
    case 'timed_out':
      return 'build.failed';
    case 'canceled':
      return 'build.canceled';
    default:
      return null;
  }
}

/** Delivery attempts per delivery (Temporal's retry policy): with backoff capped at 10 minutes, about an hour and a half. */
export const MAX_DELIVERY_ATTEMPTS = 12;
/** Attempts kept per delivery in the database (the newest). */
export const KEPT_ATTEMPTS = 20;

/** Starts the delivery workflow of a stored delivery (activities/notify.ts has Temporal's). */
export interface DeliveryStarter {
  /** 'running' when that delivery's workflow runs already (nothing new started). */
  start(deliveryId: string): Promise<'started' | 'running'>;
}
