DROP INDEX "webhook_deliveries_repositories";--> statement-breakpoint
CREATE INDEX "webhook_deliveries_repositories" ON "webhook_deliveries" USING gin ("repository_ids") WITH (fastupdate=false);