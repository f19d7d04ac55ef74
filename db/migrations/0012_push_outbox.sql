ALTER TABLE "webhook_deliveries" ADD COLUMN "push_input" jsonb;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "workflow_started_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "dispatch_after" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "webhook_deliveries_undispatched" ON "webhook_deliveries" USING btree ("dispatch_after") WHERE "webhook_deliveries"."workflow_started_at" is null;--> statement-breakpoint
-- Deliveries recorded before the outbox had their workflow started in the request itself.
UPDATE "webhook_deliveries" SET "workflow_started_at" = "created_at" WHERE "workflow_started_at" IS NULL;
