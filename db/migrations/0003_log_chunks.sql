CREATE TABLE "build_log_chunks" (
	"build_id" uuid NOT NULL,
	"stream" text NOT NULL,
	"byte_offset" bigint NOT NULL,
	"seq" bigserial NOT NULL,
	"data" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "build_log_chunks_build_id_stream_byte_offset_pk" PRIMARY KEY("build_id","stream","byte_offset")
);
--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "log_bytes" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "log_incomplete" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "build_log_chunks" ADD CONSTRAINT "build_log_chunks_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "build_log_chunks_build_seq" ON "build_log_chunks" USING btree ("build_id","seq");--> statement-breakpoint
-- Keep the logs of earlier builds: one chunk per old line, offsets the running sum of line bytes.
INSERT INTO "build_log_chunks" ("build_id", "stream", "byte_offset", "seq", "data", "created_at")
SELECT "build_id", coalesce("platform", ''),
	coalesce(sum(octet_length("line") + 1) OVER (PARTITION BY "build_id", "platform" ORDER BY "seq" ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0),
	"seq", convert_to("line" || E'\n', 'UTF8'), "created_at"
FROM "build_logs";--> statement-breakpoint
SELECT setval(pg_get_serial_sequence('build_log_chunks', 'seq'), coalesce((SELECT max("seq") FROM "build_log_chunks"), 0) + 1, false);--> statement-breakpoint
DROP TABLE "build_logs" CASCADE;--> statement-breakpoint
-- Log followers wait on channel kiln_build_log (payload: the build id) instead of polling: every
-- chunk stored and every status change wakes them. Postgres folds repeats within a transaction.
CREATE FUNCTION "kiln_notify_build_log_chunk"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('kiln_build_log', NEW."build_id"::text);
	RETURN NULL;
END $$;--> statement-breakpoint
CREATE FUNCTION "kiln_notify_build_status"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('kiln_build_log', NEW."id"::text);
	RETURN NULL;
END $$;--> statement-breakpoint
CREATE TRIGGER "build_log_chunks_notify" AFTER INSERT ON "build_log_chunks" FOR EACH ROW EXECUTE FUNCTION "kiln_notify_build_log_chunk"();--> statement-breakpoint
CREATE TRIGGER "builds_status_notify" AFTER UPDATE OF "status" ON "builds" FOR EACH ROW WHEN (OLD."status" IS DISTINCT FROM NEW."status") EXECUTE FUNCTION "kiln_notify_build_status"();
