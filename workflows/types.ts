// Moved to domain/build-plan.ts (the activities share it); this re-export only bridges branches
// written against the old path.
export * from '../domain/build-plan';
