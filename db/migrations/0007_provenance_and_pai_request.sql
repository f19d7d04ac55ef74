ALTER TABLE "build_platforms" ADD COLUMN "attestation_digest" text;--> statement-breakpoint
ALTER TABLE "build_rules" ADD COLUMN "provenance" text DEFAULT 'min' NOT NULL;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "provenance" text DEFAULT 'min' NOT NULL;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "pai_request" jsonb;