// Moved to domain/temporal.ts; this re-export only bridges branches written against the old path.
export { KILN_SEARCH_ATTRIBUTES, KilnCommit, KilnRef, KilnRepository, KilnStatus, KilnTrigger } from '../domain/temporal';
