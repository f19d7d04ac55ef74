ALTER TABLE "repositories" ADD COLUMN "source_url_key" text;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "workflow_id" text;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "repository_ids" uuid[] DEFAULT '{}'::uuid[] NOT NULL;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "status" text DEFAULT 'received' NOT NULL;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "results" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "finished_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "repositories_source_key" ON "repositories" USING btree ("source_url_key","source_provider");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_repositories" ON "webhook_deliveries" USING gin ("repository_ids");--> statement-breakpoint
-- Deliveries recorded before push workflows were handled in their request: they are done.
UPDATE "webhook_deliveries" SET "status" = 'done', "finished_at" = "created_at";
