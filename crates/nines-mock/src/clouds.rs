//! The test credentials the cloud dialects check, and what checking them shares. **Test only**:
//! these values were made up for nines' tests and grant nothing anywhere.

/// The AWS access key id Bedrock requests must be signed with.
pub const TEST_AWS_ACCESS_KEY_ID: &str = "AKIANINESMOCKTEST0001";
/// Its secret: a SigV4 signature made with any other secret is refused (403), as AWS does.
pub const TEST_AWS_SECRET_ACCESS_KEY: &str = "nines-mock-test-only-secret-access-key-0001";

/// The public key of the test service account in `fixtures/test-only/`: the token endpoint
/// verifies a JWT's RS256 signature with it.
pub const TEST_SERVICE_ACCOUNT_PUBLIC_KEY: &str =
    include_str!("../fixtures/test-only/vertex-service-account.pub.pem");

/// The test service account's key file (its `token_uri` points nowhere; tests rewrite it to
/// the mock's `/token`).
pub const TEST_SERVICE_ACCOUNT_FILE: &str =
    include_str!("../fixtures/test-only/vertex-service-account.json");

/// The account the test key file names; the token endpoint issues tokens to it only.
pub const TEST_SERVICE_ACCOUNT_EMAIL: &str =
    "nines-test@nines-test-project.iam.gserviceaccount.com";
