CREATE TABLE "build_logs" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"build_id" uuid NOT NULL,
	"platform" text,
	"line" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "build_platforms" (
	"build_id" uuid NOT NULL,
	"platform" text NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"digest" text,
	"accelerated_digest" text,
	"cache_hits" integer DEFAULT 0 NOT NULL,
	"steps" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	CONSTRAINT "build_platforms_build_id_platform_pk" PRIMARY KEY("build_id","platform")
);
--> statement-breakpoint
CREATE TABLE "builds" (
	"id" uuid PRIMARY KEY NOT NULL,
	"repository_id" uuid NOT NULL,
	"rule_id" uuid,
	"status" text DEFAULT 'queued' NOT NULL,
	"phase" text,
	"trigger" text NOT NULL,
	"creation_method" text NOT NULL,
	"source_url" text,
	"source_ref" text,
	"source_commit" text,
	"dockerfile" text,
	"context_dir" text DEFAULT '/' NOT NULL,
	"dockerfile_path" text DEFAULT 'Dockerfile' NOT NULL,
	"platforms" text[] NOT NULL,
	"build_args" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"labels" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"target" text,
	"tags" text[] NOT NULL,
	"no_cache" boolean DEFAULT false NOT NULL,
	"accelerated" boolean DEFAULT false NOT NULL,
	"timeout_minutes" integer DEFAULT 60 NOT NULL,
	"manifest_digest" text,
	"pushed_tags" text[] DEFAULT '{}'::text[] NOT NULL,
	"accelerated_tags" text[] DEFAULT '{}'::text[] NOT NULL,
	"accelerated_digest" text,
	"error_code" text,
	"error_message" text,
	"client_token" text,
	"request_hash" text,
	"workflow_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "image_tags" (
	"id" uuid PRIMARY KEY NOT NULL,
	"repository_id" uuid NOT NULL,
	"tag" text NOT NULL,
	"digest" text NOT NULL,
	"build_id" uuid,
	"creation_method" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "namespaces" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"default_visibility" text DEFAULT 'private' NOT NULL,
	"default_immutable_tags" boolean DEFAULT false NOT NULL,
	"default_accelerated_images" boolean DEFAULT false NOT NULL,
	"auto_create_repository" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "namespaces_name_unique" UNIQUE("name")
);
--> statement-breakpoint
CREATE TABLE "repositories" (
	"id" uuid PRIMARY KEY NOT NULL,
	"namespace_id" uuid NOT NULL,
	"name" text NOT NULL,
	"visibility" text DEFAULT 'private' NOT NULL,
	"immutable_tags" boolean DEFAULT false NOT NULL,
	"accelerated_images" boolean DEFAULT false NOT NULL,
	"summary" text DEFAULT '' NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"source_provider" text,
	"source_url" text,
	"source_token_enc" text,
	"webhook_secret_enc" text,
	"auto_build" boolean DEFAULT true NOT NULL,
	"no_cache" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "build_logs" ADD CONSTRAINT "build_logs_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "build_platforms" ADD CONSTRAINT "build_platforms_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "builds" ADD CONSTRAINT "builds_repository_id_repositories_id_fk" FOREIGN KEY ("repository_id") REFERENCES "public"."repositories"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "image_tags" ADD CONSTRAINT "image_tags_repository_id_repositories_id_fk" FOREIGN KEY ("repository_id") REFERENCES "public"."repositories"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "image_tags" ADD CONSTRAINT "image_tags_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "repositories" ADD CONSTRAINT "repositories_namespace_id_namespaces_id_fk" FOREIGN KEY ("namespace_id") REFERENCES "public"."namespaces"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "build_logs_build_seq" ON "build_logs" USING btree ("build_id","seq");--> statement-breakpoint
CREATE UNIQUE INDEX "builds_client_token" ON "builds" USING btree ("client_token");--> statement-breakpoint
CREATE INDEX "builds_repository_created" ON "builds" USING btree ("repository_id","created_at");--> statement-breakpoint
CREATE INDEX "builds_created" ON "builds" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "builds_status" ON "builds" USING btree ("status");--> statement-breakpoint
CREATE UNIQUE INDEX "image_tags_repository_tag" ON "image_tags" USING btree ("repository_id","tag");--> statement-breakpoint
CREATE UNIQUE INDEX "repositories_namespace_name" ON "repositories" USING btree ("namespace_id","name");