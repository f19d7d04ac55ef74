DROP INDEX "builds_client_token";--> statement-breakpoint
ALTER TABLE "api_tokens" ADD COLUMN "expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "api_tokens" ADD COLUMN "last_used_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "client_token_namespace_id" uuid;--> statement-breakpoint
-- Builds submitted with a clientToken before tokens were scoped: their repository's namespace.
UPDATE "builds" SET "client_token_namespace_id" = r."namespace_id" FROM "repositories" r WHERE r."id" = "builds"."repository_id" AND "builds"."client_token" IS NOT NULL;--> statement-breakpoint
ALTER TABLE "builds" ADD CONSTRAINT "builds_client_token_namespace_id_namespaces_id_fk" FOREIGN KEY ("client_token_namespace_id") REFERENCES "public"."namespaces"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "builds_client_token" ON "builds" USING btree ("client_token_namespace_id","client_token");