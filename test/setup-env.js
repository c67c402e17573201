'use strict';
// Google client libraries must never probe the metadata server in tests.
process.env.METADATA_SERVER_DETECTION = 'none';
