// graphql-codegen: TypeScript types for the schema (typescript plugin) and for every
// operation in examples/*.graphql (typescript-operations, which since v6 emits the enums
// and inputs its operations use itself, hence two files), and the same operations as
// typed documents (client-preset, in generated/client/). `npm run check` runs this and
// tsc; scripts/check-frontend-types runs both after `npm ci`. A document that no longer
// validates against schema.graphql fails here; a change of shape (a renamed field, a new
// null) fails tsc on frontend-check/usage.ts.
import type { CodegenConfig } from "@graphql-codegen/cli";

const shared = {
  strictScalars: true, // a new custom scalar must be given a type here
  scalars: { Decimal: "string", DateTime: "string", Date: "string" },
  enumsAsTypes: true,
  useTypeImports: true,
};

const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["examples/*.graphql"],
  generates: {
    "frontend-check/generated/schema.ts": { plugins: ["typescript"], config: shared },
    "frontend-check/generated/operations.ts": {
      plugins: ["typescript-operations"],
      config: shared,
    },
    // client-preset: a TypedDocumentNode per operation (EnterpriseTreeDocument …) and a
    // graphql() that returns them, which Apollo Client, urql and graphql-request type
    // their results and variables from.
    "frontend-check/generated/client/": {
      preset: "client",
      config: shared,
      presetConfig: { fragmentMasking: false },
    },
  },
};

export default config;
