//! `orchard-tools`, the server built into Orchard: a calculator and a weather
//! tool with demo data, so anyone can see whether a model calls tools well
//! before installing a server.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::json;

/// The built-in server's name.
pub const NAME: &str = "orchard-tools";

/// The built-in tools, as MCP describes them.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "calculate",
            "Evaluates an arithmetic expression exactly: + - * / % ^ (power), parentheses and decimals, e.g. \"(1.5 + 2) * 3^2\". Use it instead of doing arithmetic in your head.",
            schema(json!({
                "type": "object",
                "properties": {
                    "expression": {"type": "string", "description": "The expression, e.g. \"12.5 * (3 - 1) / 4\""}
                },
                "required": ["expression"],
                "additionalProperties": false
            })),
        )
        .with_annotations(
            ToolAnnotations::with_title("Calculator")
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        ),
        Tool::new(
            "get_weather",
            "Returns DEMO weather for a place: made-up figures for testing tool use, not a real forecast.",
            schema(json!({
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "A city or place name, e.g. \"Lisbon\""},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit (celsius when left out)"}
                },
                "required": ["location"],
                "additionalProperties": false
            })),
        )
        .with_annotations(
            ToolAnnotations::with_title("Weather (demo data)")
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        ),
    ]
}

fn schema(value: serde_json::Value) -> Arc<JsonObject> {
    match value {
        serde_json::Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// Runs a built-in tool; `None` when there is no tool by that name. Bad
/// arguments are a tool error the model can read and correct.
pub fn call(name: &str, arguments: &JsonObject) -> Option<CallToolResult> {
    let text = |key: &str| arguments.get(key).and_then(|v| v.as_str());
    Some(match name {
        "calculate" => match text("expression") {
            None => failure(
                "calculate needs an \"expression\" string, e.g. {\"expression\": \"2 + 2\"}",
            ),
            Some(expression) => match crate::calc::evaluate(expression) {
                Ok(answer) => {
                    let mut result =
                        CallToolResult::success(vec![ContentBlock::text(answer.to_string())]);
                    result.structured_content = Some(json!({
                        "expression": expression,
                        "value": answer.decimal,
                        "fraction": answer.exact_fraction,
                    }));
                    result
                }
                Err(error) => failure(&format!("cannot evaluate {expression:?}: {error}")),
            },
        },
        "get_weather" => match text("location").map(str::trim).filter(|l| !l.is_empty()) {
            None => {
                failure("get_weather needs a \"location\" string, e.g. {\"location\": \"Lisbon\"}")
            }
            Some(location) => {
                let fahrenheit = match text("unit") {
                    None | Some("celsius") => false,
                    Some("fahrenheit") => true,
                    Some(other) => {
                        return Some(failure(&format!(
                            "unit {other:?} is not \"celsius\" or \"fahrenheit\""
                        )));
                    }
                };
                weather(location, fahrenheit)
            }
        },
        _ => return None,
    })
}

fn failure(message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.to_string())])
}

/// Made-up weather, the same for the same place, labelled as such.
fn weather(location: &str, fahrenheit: bool) -> CallToolResult {
    const CONDITIONS: [&str; 6] = [
        "sunny",
        "partly cloudy",
        "cloudy",
        "light rain",
        "windy",
        "foggy",
    ];
    let seed = location.to_lowercase().bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    let celsius = (seed % 35) as i32 - 5;
    let conditions = CONDITIONS[(seed / 35) as usize % CONDITIONS.len()];
    let humidity = 30 + (seed / 7) % 60;
    let (temperature, unit) = if fahrenheit {
        (celsius * 9 / 5 + 32, "°F")
    } else {
        (celsius, "°C")
    };
    let text = format!(
        "DEMO DATA (not a real forecast): {location}: {temperature}{unit}, {conditions}, humidity {humidity}%"
    );
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(json!({
        "demo": true,
        "location": location,
        "temperature": temperature,
        "unit": if fahrenheit { "fahrenheit" } else { "celsius" },
        "conditions": conditions,
        "humidity_percent": humidity,
    }));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: serde_json::Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    fn text(result: &CallToolResult) -> String {
        result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect()
    }

    #[test]
    fn the_calculator_answers_exactly_and_explains_its_errors() {
        let result = call("calculate", &args(json!({"expression": "0.1 + 0.2"}))).expect("tool");
        assert_eq!(result.is_error, Some(false));
        assert_eq!(text(&result), "0.3");
        assert_eq!(
            result
                .structured_content
                .as_ref()
                .and_then(|s| s["value"].as_str()),
            Some("0.3")
        );
        let bad = call("calculate", &args(json!({"expression": "1/0"}))).expect("tool");
        assert_eq!(bad.is_error, Some(true));
        assert!(text(&bad).contains("division by zero"), "{}", text(&bad));
        let missing = call("calculate", &args(json!({}))).expect("tool");
        assert_eq!(missing.is_error, Some(true));
    }

    #[test]
    fn the_weather_is_labelled_demo_and_stable_per_place() {
        let a = call("get_weather", &args(json!({"location": "Lisbon"}))).expect("tool");
        let b = call("get_weather", &args(json!({"location": "lisbon"}))).expect("tool");
        assert!(text(&a).starts_with("DEMO DATA"), "{}", text(&a));
        assert_eq!(
            a.structured_content
                .as_ref()
                .map(|s| s["temperature"].clone()),
            b.structured_content
                .as_ref()
                .map(|s| s["temperature"].clone())
        );
        let f = call(
            "get_weather",
            &args(json!({"location": "Lisbon", "unit": "fahrenheit"})),
        )
        .expect("tool");
        assert!(text(&f).contains("°F"));
        let bad = call(
            "get_weather",
            &args(json!({"location": "Lisbon", "unit": "kelvin"})),
        )
        .expect("tool");
        assert_eq!(bad.is_error, Some(true));
        assert!(call("no_such_tool", &JsonObject::new()).is_none());
        assert_eq!(tools().len(), 2);
    }
}
