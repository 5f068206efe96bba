//! The flags of each collector, generated from the registry: derive cannot
//! make a `--collector.<name>` and `--no-collector.<name>` pair per entry.

use clap::{ArgAction, ArgMatches};

use crate::collector::COLLECTORS;

/// `command` with the per-collector flags.
pub(super) fn add_flags(mut command: clap::Command) -> clap::Command {
    for registration in COLLECTORS {
        let name = registration.name;
        let default = if registration.enabled_by_default {
            "on"
        } else {
            "off"
        };
        command = command
            .arg(
                clap::Arg::new(format!("collector.{name}"))
                    .long(format!("collector.{name}"))
                    .env(format!("SIE_COLLECTOR_{}", name.to_uppercase()))
                    .value_name("BOOL")
                    .value_parser(clap::builder::BoolishValueParser::new())
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
                    .help(format!(
                        "Collect {} [default: {default}]",
                        registration.help
                    )),
            )
            .arg(
                clap::Arg::new(format!("no-collector.{name}"))
                    .long(format!("no-collector.{name}"))
                    .action(ArgAction::SetTrue)
                    .help(format!("Do not run the {name} collector")),
            );
    }
    command
}

/// The collectors the flags in `matches` enable, in the registry's order.
pub(super) fn enabled(matches: &ArgMatches, disable_defaults: bool) -> Vec<&'static str> {
    COLLECTORS
        .iter()
        .filter(|registration| {
            let name = registration.name;
            if matches.get_flag(&format!("no-collector.{name}")) {
                return false;
            }
            let explicit = matches
                .get_one::<bool>(&format!("collector.{name}"))
                .copied();
            explicit.unwrap_or(registration.enabled_by_default && !disable_defaults)
        })
        .map(|registration| registration.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collectors(args: &[&str]) -> Vec<&'static str> {
        let matches = super::super::command()
            .try_get_matches_from(std::iter::once("exporter").chain(args.iter().copied()))
            .unwrap();
        let disable = matches.get_flag("disable_default_collectors");
        enabled(&matches, disable)
    }

    #[test]
    fn collectors_are_selected_like_node_exporter() {
        assert_eq!(collectors(&[]), ["gpu", "host", "pods", "hpc"]);
        assert_eq!(collectors(&["--no-collector.host"]), ["gpu", "pods", "hpc"]);
        assert_eq!(
            collectors(&["--collector.disable-defaults", "--collector.host"]),
            ["host"]
        );
        assert_eq!(
            collectors(&["--collector.gpu=false"]),
            ["host", "pods", "hpc"]
        );
    }
}
