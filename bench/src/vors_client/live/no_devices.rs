//! Stands in for `devices.rs` in a build without the `sound-devices` feature (no cpal, no
//! ALSA headers needed): naming a device, or listing them, is an error that says how to get
//! them. The device types have no values, so the call's code for them is there and never
//! runs.

use std::sync::mpsc::Sender;

use super::{CaptureFrame, DeviceInfo};
use crate::audio::FRAME_SAMPLES;
use crate::vors_client::error::CallError;
use crate::vors_client::net::Input;

/// Every sound device: none in this build.
pub fn list() -> Result<Vec<DeviceInfo>, CallError> {
    Err(CallError::NoSoundDevices)
}

/// A device found, not started: none in this build.
#[derive(Debug)]
pub enum DeviceSetup {}

/// The microphone on a sound device: none in this build.
#[derive(Debug)]
pub enum InputDevice {}

impl InputDevice {
    /// Always the error that says how to build with devices.
    pub(crate) fn find(_name: &str) -> Result<DeviceSetup, CallError> {
        Err(CallError::NoSoundDevices)
    }

    /// Never called: there is no setup.
    pub(crate) fn start(setup: DeviceSetup, _events: Sender<Input>) -> Result<Self, CallError> {
        match setup {}
    }

    /// Never called: there is no device.
    pub fn next_frame(&self, _out: &mut [i16; FRAME_SAMPLES]) -> CaptureFrame {
        match *self {}
    }

    /// Never called: there is no device.
    pub fn stop(self) {
        match self {}
    }
}

/// The speaker on a sound device: none in this build.
#[derive(Debug)]
pub enum OutputDevice {}

impl OutputDevice {
    /// Always the error that says how to build with devices.
    pub(crate) fn start(_name: &str, _events: Sender<Input>) -> Result<Self, CallError> {
        Err(CallError::NoSoundDevices)
    }

    /// Never called: there is no device.
    pub fn play(&self, _frame: &[i16; FRAME_SAMPLES]) {
        match *self {}
    }

    /// Never called: there is no device.
    pub fn stop(self) {
        match self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_a_device_says_how_to_build_with_devices() {
        let error = InputDevice::find("default").expect_err("no devices in this build");
        assert_eq!(
            error.to_string(),
            "built without sound-device support: rebuild with --features sound-devices, or \
             use --input-cmd/--output-cmd"
        );
        assert!(matches!(
            OutputDevice::start("default", std::sync::mpsc::channel().0),
            Err(CallError::NoSoundDevices)
        ));
        assert!(matches!(list(), Err(CallError::NoSoundDevices)));
    }
}
