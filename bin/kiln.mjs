#!/usr/bin/env node
// `npx kiln ...`: the CLI is TypeScript run through tsx (a dependency), like `npm start`.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
