ALTER TABLE "builds" ADD COLUMN "slot_requested_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "namespaces" ADD COLUMN "max_concurrent_builds" integer;--> statement-breakpoint
ALTER TABLE "namespaces" ADD COLUMN "max_timeout_minutes" integer;--> statement-breakpoint
ALTER TABLE "namespaces" ADD COLUMN "max_repositories" integer;--> statement-breakpoint
ALTER TABLE "namespaces" ADD COLUMN "max_rules" integer;