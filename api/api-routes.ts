// Every route under /api/v1 in one chained router, so its type carries them all: the typed
// client's source (api/client.ts). Apart from api/app.ts so the client does not import the app
// (which mounts the console, which uses the client).
import { buildRoutes } from './routes/builds';
import { contextRoutes } from './routes/contexts';
import { imageBuildRoutes } from './routes/imagebuilds';
import { namespaceRoutes } from './routes/namespaces';
import { repositoryRoutes } from './routes/repositories';
import { ruleRoutes } from './routes/rules';
import { subscriptionRoutes } from './routes/subscriptions';
import type { AppDeps } from './types';
import { createRouter } from './util';

/** Every route under /api/v1, chained so its type carries them all: the typed client's source (api/client.ts). */
export function apiRoutes(deps: AppDeps) {
  return createRouter()
    .route('/', namespaceRoutes(deps))
    .route('/', repositoryRoutes(deps))
    .route('/', buildRoutes(deps))
    .route('/', contextRoutes(deps))
    .route('/', imageBuildRoutes(deps))
    .route('/', ruleRoutes(deps))
    .route('/', subscriptionRoutes(deps));
}

export type KilnApi = ReturnType<typeof apiRoutes>;
