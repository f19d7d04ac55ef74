CREATE TABLE "api_tokens" (
	"id" uuid PRIMARY KEY NOT NULL,
	"namespace_id" uuid NOT NULL,
	"name" text NOT NULL,
	"token_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "api_tokens_token_hash_unique" UNIQUE("token_hash")
);
--> statement-breakpoint
CREATE TABLE "build_rules" (
	"id" uuid PRIMARY KEY NOT NULL,
	"repository_id" uuid NOT NULL,
	"type" text NOT NULL,
	"match" text NOT NULL,
	"context_dir" text DEFAULT '/' NOT NULL,
	"dockerfile" text DEFAULT 'Dockerfile' NOT NULL,
	"platforms" text[] NOT NULL,
	"build_args" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"target" text,
	"tags" jsonb NOT NULL,
	"no_cache" boolean DEFAULT false NOT NULL,
	"accelerated" boolean DEFAULT false NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"paths" text[] DEFAULT '{}'::text[] NOT NULL,
	"semver" boolean DEFAULT false NOT NULL,
	"cancel_superseded" boolean DEFAULT true NOT NULL,
	"timeout_minutes" integer DEFAULT 60 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"provider" text NOT NULL,
	"delivery_id" text NOT NULL,
	"build_ids" uuid[] DEFAULT '{}'::uuid[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "webhook_deliveries_provider_delivery_id_pk" PRIMARY KEY("provider","delivery_id")
);
--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "registry_auths_enc" text;--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_namespace_id_namespaces_id_fk" FOREIGN KEY ("namespace_id") REFERENCES "public"."namespaces"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "build_rules" ADD CONSTRAINT "build_rules_repository_id_repositories_id_fk" FOREIGN KEY ("repository_id") REFERENCES "public"."repositories"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "build_rules_repository" ON "build_rules" USING btree ("repository_id");--> statement-breakpoint
ALTER TABLE "builds" ADD CONSTRAINT "builds_rule_id_build_rules_id_fk" FOREIGN KEY ("rule_id") REFERENCES "public"."build_rules"("id") ON DELETE set null ON UPDATE no action;