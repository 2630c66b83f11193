//! Configuration from environment variables.
//!
//! Each binary declares a `#[derive(Deserialize)]` struct whose fields are its variables in lower case
//! (`kafka_brokers` is `KAFKA_BROKERS`) and loads it with [`from_env`]. Every error names the variable
//! and says what was expected, because the person reading it is looking at a pod manifest.

use std::{fmt, time::Duration};

use serde::{de, Deserialize, Deserializer};

/// A variable that is missing or does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is required but not set")]
    Missing(String),
    /// A variable is set to something that does not parse.
    #[error("{var}: {reason}")]
    Invalid {
        /// The variable, as written in the environment.
        var: String,
        /// What is wrong and what was expected.
        reason: String,
    },
}

/// Loads `T` from the process environment.
pub fn from_env<T: de::DeserializeOwned>() -> Result<T, ConfigError> {
    from_iter(std::env::vars())
}

/// Loads `T` from `(name, value)` pairs: what tests use instead of mutating the process environment.
pub fn from_iter<T, I>(vars: I) -> Result<T, ConfigError>
where
    T: de::DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    match envy::from_iter::<_, Tracked<T>>(vars) {
        Ok(Tracked(value)) => Ok(value),
        Err(envy::Error::MissingValue(field)) => Err(ConfigError::Missing(field.to_uppercase())),
        Err(envy::Error::Custom(message)) => Err(split_tracked(&message)),
    }
}

/// Marks where [`Tracked`] put the variable name in front of a message.
const VAR_SEPARATOR: &str = "\u{1f}";

/// Deserializes `T`, prefixing any error with the path of the field that failed. envy only names the
/// variable for numbers and booleans; this names it for every type, durations and lists included.
struct Tracked<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Tracked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(deserializer, &mut track);
        match T::deserialize(tracked) {
            Ok(value) => Ok(Tracked(value)),
            Err(err) => {
                let path = track.path().to_string();
                if path.is_empty() || path == "." {
                    // A missing field: envy already names it.
                    Err(err)
                } else {
                    // A list element's path is `field[3]`: the variable is the field.
                    let var = path.split('[').next().unwrap_or(&path).to_uppercase();
                    Err(de::Error::custom(format_args!("{var}{VAR_SEPARATOR}{err}")))
                }
            }
        }
    }
}

fn split_tracked(message: &str) -> ConfigError {
    match message.split_once(VAR_SEPARATOR) {
        Some((var, reason)) => ConfigError::Invalid {
            var: var.to_string(),
            reason: reason.to_string(),
        },
        None => ConfigError::Invalid {
            var: "environment".to_string(),
            reason: message.to_string(),
        },
    }
}

/// The variables `T` reads, upper-cased as envy matches them (`kafka_brokers` is `KAFKA_BROKERS`),
/// renames and aliases included: what the documentation check compares `docs/configuration.md`
/// with. `T` is deserialized from a recorder that keeps the field list serde's derive hands to
/// `deserialize_struct`, so no list is kept by hand.
///
/// # Errors
/// `T` is not a plain struct: a `#[serde(flatten)]` field makes the derive ask for a map, whose keys
/// cannot be listed ahead of time.
pub fn variables<T: de::DeserializeOwned>() -> Result<Vec<String>, String> {
    let mut recorder = FieldRecorder(None);
    // The recorder always fails after recording: there is no value to build.
    let _ = T::deserialize(&mut recorder);
    match recorder.0 {
        Some(fields) => Ok(fields.iter().map(|f| f.to_uppercase()).collect()),
        None => Err(format!(
            "{} is not a plain struct (a #[serde(flatten)] field?): its variables cannot be listed",
            std::any::type_name::<T>()
        )),
    }
}

/// A deserializer that only records the field names of the struct asked for.
struct FieldRecorder(Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for &mut FieldRecorder {
    type Error = de::value::Error;

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("recorded"))
    }

    fn deserialize_any<V: de::Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// A duration written the way people write them: `1s`, `250ms`, `5m`, `1h 30m`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The wrapped duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|err| {
                de::Error::custom(format_args!(
                    "'{text}' is not a duration ({err}); write a number and a unit, like 1s, 250ms or 5m"
                ))
            })
    }
}

/// Deserializes `KAFKA_BROKERS`: comma separated `host:port` pairs, at least one. Blanks around commas
/// are forgiven; an empty entry or one without a port is not, because rskafka would only fail later
/// with a vaguer message.
pub fn brokers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let brokers: Vec<String> = text.split(',').map(|b| b.trim().to_string()).collect();
    for broker in &brokers {
        let port = broker.rsplit_once(':').map(|(_, port)| port);
        if broker.is_empty() || port.is_none_or(|p| p.parse::<u16>().is_err()) {
            return Err(de::Error::custom(format_args!(
                "'{text}' is not a list of brokers; expected host:port[,host:port...], like kafka-0:9092,kafka-1:9092"
            )));
        }
    }
    Ok(brokers)
}

/// This machine's name: Kubernetes sets `HOSTNAME` to the pod name, which is what an operator wants to
/// see as a producer's identity or a consumer's client id.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Example {
        #[serde(deserialize_with = "brokers")]
        kafka_brokers: Vec<String>,
        #[serde(default = "one_second")]
        interval: HumanDuration,
        #[serde(default)]
        partitions: Option<i32>,
    }

    fn one_second() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }

    fn load(vars: &[(&str, &str)]) -> Result<Example, ConfigError> {
        from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn variables_are_the_fields_upper_cased_with_renames_and_aliases() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Renamed {
            #[serde(rename = "group")]
            group_id: String,
            #[serde(alias = "interval")]
            every: Option<String>,
        }
        assert_eq!(
            variables::<Example>().expect("plain struct"),
            ["KAFKA_BROKERS", "INTERVAL", "PARTITIONS"]
        );
        assert_eq!(
            variables::<Renamed>().expect("plain struct"),
            ["GROUP", "EVERY", "INTERVAL"]
        );
    }

    #[test]
    fn a_flattened_struct_is_refused_rather_than_half_listed() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            topic: String,
            #[serde(flatten)]
            inner: Example,
        }
        let err = variables::<Outer>().expect_err("flatten");
        assert!(err.contains("flatten"), "{err}");
    }

    #[test]
    fn defaults_apply_and_lists_split() {
        let cfg = load(&[("KAFKA_BROKERS", "a:9092, b:9093")]).expect("valid");
        assert_eq!(cfg.kafka_brokers, vec!["a:9092", "b:9093"]);
        assert_eq!(cfg.interval.get(), Duration::from_secs(1));
        assert_eq!(cfg.partitions, None);
    }

    #[test]
    fn human_durations_parse() {
        let cfg = load(&[("KAFKA_BROKERS", "a:1"), ("INTERVAL", "250ms")]).expect("valid");
        assert_eq!(cfg.interval.get(), Duration::from_millis(250));
    }

    #[test]
    fn missing_variable_is_named() {
        assert_eq!(
            load(&[]).expect_err("missing"),
            ConfigError::Missing("KAFKA_BROKERS".into())
        );
    }

    #[test]
    fn malformed_duration_names_the_variable() {
        let err = load(&[("KAFKA_BROKERS", "a:1"), ("INTERVAL", "soon")]).expect_err("bad");
        let ConfigError::Invalid { var, reason } = err else {
            panic!("expected Invalid, got {err:?}");
        };
        assert_eq!(var, "INTERVAL");
        assert!(
            reason.contains("'soon'") && reason.contains("250ms"),
            "{reason}"
        );
    }

    #[test]
    fn malformed_number_names_the_variable() {
        let err = load(&[("KAFKA_BROKERS", "a:1"), ("PARTITIONS", "nine")]).expect_err("bad");
        assert!(
            matches!(&err, ConfigError::Invalid { var, .. } if var == "PARTITIONS"),
            "{err:?}"
        );
    }

    #[test]
    fn brokers_without_port_or_empty_are_rejected() {
        for bad in ["", "kafka", "a:9092,", "a:notaport"] {
            let err = load(&[("KAFKA_BROKERS", bad)]).expect_err(bad);
            assert!(
                matches!(&err, ConfigError::Invalid { var, .. } if var == "KAFKA_BROKERS"),
                "{bad}: {err:?}"
            );
        }
    }
}
