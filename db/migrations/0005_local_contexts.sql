CREATE TABLE "build_contexts" (
	"repository" text NOT NULL,
	"digest" text NOT NULL,
	"size" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "build_contexts_repository_digest_pk" PRIMARY KEY("repository","digest")
);
--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "context_digest" text;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "context_size" bigint;--> statement-breakpoint
CREATE INDEX "build_contexts_last_used" ON "build_contexts" USING btree ("last_used_at");