//! Routes each request to the endpoint that serves its `model`, so judging steps can ask a
//! judge model that lives at another base URL. The model layer still knows nothing of
//! hats: a route is a model name and a client, as in LiteLLM's model list.

use std::sync::Arc;

use super::{BoxFuture, ChatModel, ModelError, ModelReply, ModelRequest};

pub struct Router {
    /// Model name → the client for its endpoint. The first route is the fallback.
    routes: Vec<(String, Arc<dyn ChatModel>)>,
}

impl Router {
    pub fn new(routes: Vec<(String, Arc<dyn ChatModel>)>) -> Router {
        Router { routes }
    }
}

impl ChatModel for Router {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        let name = request.body.get("model").and_then(|m| m.as_str());
        let route = self
            .routes
            .iter()
            .find(|(m, _)| Some(m.as_str()) == name)
            .or_else(|| self.routes.first());
        match route {
            Some((_, client)) => client.complete(request),
            None => Box::pin(async {
                Err(ModelError::Config("no model endpoint is configured".into()))
            }),
        }
    }
}
